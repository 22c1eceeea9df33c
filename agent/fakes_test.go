package agent_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/test/releases"
)

// fakeRepo is a branch held in memory: each commit is a full file map.
type fakeRepo struct {
	mu       sync.Mutex
	commits  []map[string][]byte
	writes   []string // commit messages of status writes
	headErr  error
	forgedBy map[string]string // cluster → the key that "signed" its status, when not its own
	writeErr error             // every status push fails with it
}

func (r *fakeRepo) commit(files map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := map[string][]byte{}
	if n := len(r.commits); n > 0 {
		for k, v := range r.commits[n-1] {
			next[k] = v
		}
	}
	for k, v := range files {
		next[k] = []byte(v)
	}
	r.commits = append(r.commits, next)
}

func (r *fakeRepo) rev(i int) string { return fmt.Sprintf("main@sha1:%040x", i+1) }

func (r *fakeRepo) Head(_ context.Context, since string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.headErr != nil {
		return "", r.headErr
	}
	if len(r.commits) == 0 {
		return "", nil
	}
	return r.rev(len(r.commits) - 1), nil
}

func (r *fakeRepo) Read(_ context.Context, rev, path string) ([]byte, agent.Provenance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.commits {
		if r.rev(i) == rev {
			if b, ok := r.commits[i][path]; ok {
				return b, agent.Provenance{}, nil
			}
			return nil, agent.Provenance{}, &fault.Error{Reason: gitsource.ReasonDesiredFileMissing, Stall: true, Message: path + " does not exist"}
		}
	}
	return nil, agent.Provenance{}, errors.New("no such revision")
}

func (r *fakeRepo) Accepted(string, string) {}

func (r *fakeRepo) ReadStatus(_ context.Context, path string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.commits) == 0 || r.commits[len(r.commits)-1][path] == nil {
		return nil, &fault.Error{Reason: gitsource.ReasonDesiredFileMissing, Stall: true, Message: path + " does not exist"}
	}
	return r.commits[len(r.commits)-1][path], nil
}

// fakeMemory is the agent's memory as the cluster keeps it: it outlives
// the agents of a world, as the ConfigMap outlives a process.
type fakeMemory struct {
	mu    sync.Mutex
	data  []byte
	saves int
}

func (m *fakeMemory) Load(context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.data...), nil
}

func (m *fakeMemory) Save(_ context.Context, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = append([]byte(nil), data...)
	m.saves++
	return nil
}

func (m *fakeMemory) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return string(m.data)
}

func (r *fakeRepo) Write(_ context.Context, path string, data []byte, msg string) error {
	r.mu.Lock()
	last, err := r.commits[len(r.commits)-1][path], r.writeErr
	r.mu.Unlock()
	if err != nil {
		return err
	}
	if string(last) == string(data) {
		return nil
	}
	r.commit(map[string]string{path: string(data)})
	r.mu.Lock()
	r.writes = append(r.writes, msg)
	r.mu.Unlock()
	return nil
}

func (r *fakeRepo) file(path string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(r.commits[len(r.commits)-1][path])
}

// fakeCluster is a KubeVirt that moves to a step's target when it runs.
type fakeCluster struct {
	mu         sync.Mutex
	installed  string
	operator   string // "" once the operator manifest is deleted
	mode       planner.Mode
	ran        []planner.Step
	failNext   error // returned (once) by the next Run
	observeErr error
	events     []string
	underWay   string // a hop already moving the cluster to this version
	noop       bool   // steps succeed without changing anything
	settling   bool   // observed == target, not ready yet
	imageTag   string // spec.imageTag, set by hand in drift tests
	restored   int    // RestoreCR calls that wrote
	// progress runs during every step, each with the step's progress
	// callback (what the executor says while it waits).
	progress      []func(say func(string))
	vmis          []executor.VMI
	migrating     []string // namespace/vmi with a live migration in flight
	workloadsRead int
}

// ObserveWorkloads hands out the fake's VMIs and migrations.
func (c *fakeCluster) ObserveWorkloads(_ context.Context, o *executor.Observation) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.workloadsRead++
	w := &executor.Workloads{VMIs: c.vmis}
	for _, m := range c.migrating {
		ns, vmi, _ := strings.Cut(m, "/")
		w.Migrations = append(w.Migrations, executor.Migration{Namespace: ns, VMI: vmi, Phase: "Running"})
	}
	o.Workloads = w
	o.WorkloadsKnown, o.MigrationsInFlight, o.VMIs = true, w.InFlight(), nil
	for _, v := range c.vmis {
		o.VMIs = append(o.VMIs, planner.VMI{Namespace: v.Namespace, Name: v.Name, Labels: v.Labels, Migratable: v.Migratable,
			NotMigratableReason: v.NotMigratableReason, EvictionStrategy: v.EvictionStrategy, RunStrategy: v.RunStrategy})
	}
	return nil
}

func (c *fakeCluster) Observe(context.Context) (*executor.Observation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.observeErr != nil {
		return nil, c.observeErr
	}
	o := &executor.Observation{ServerVersion: "v1.34.2"}
	if c.operator != "" {
		o.OperatorVersion, o.OperatorPresent, o.Mode = c.operator, true, planner.ModeLocked
		o.Operator = &executor.OperatorState{Version: c.operator, RolledOut: true}
	}
	if c.installed != "" {
		o.Observed = planner.Observed{Installed: c.installed, Mode: c.mode, OperatorVersion: c.operator, KubeVirt: true, OperatorPresent: c.operator != ""}
		if o.Mode == "" {
			o.Mode = planner.ModeLocked
		}
		target := c.installed
		if c.underWay != "" {
			target = c.underWay
		}
		o.ImageTag = c.imageTag
		o.KubernetesVersion, o.FeatureGates = "v1.34.2", []string{"Passt"} // they feed the checks, so the plan id
		o.KubeVirt = &executor.KubeVirtState{Observed: c.installed, Target: target, ImageTag: c.imageTag, Phase: "Deployed", Conditions: []executor.Condition{
			{Type: "Available", Status: "True"}, {Type: "Progressing", Status: "False"}, {Type: "Degraded", Status: "False"}}}
		if c.settling {
			o.KubeVirt.Conditions = []executor.Condition{{Type: "Available", Status: "False", Reason: "DeploymentInProgress"}, {Type: "Progressing", Status: "True"}, {Type: "Degraded", Status: "False"}}
		}
	}
	return o, nil
}

func (c *fakeCluster) Run(_ context.Context, s planner.Step, opts executor.StepOptions) (executor.StepResult, error) {
	c.mu.Lock()
	progress := c.progress
	c.mu.Unlock()
	for _, p := range progress {
		p(opts.Progress)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ran = append(c.ran, s)
	if err := c.failNext; err != nil {
		c.failNext = nil
		return executor.StepResult{Step: s}, err
	}
	switch {
	case c.noop:
	case s.Type == planner.StepInstall || s.Type == planner.StepUpgrade:
		c.installed, c.operator = s.To, s.To
		c.underWay = ""
	case s.Type == planner.StepDeleteKubeVirt:
		c.installed = ""
	case s.Type == planner.StepDeleteOperator:
		c.operator = ""
	}
	return executor.StepResult{Step: s, Workloads: executor.WorkloadReport{RunningBefore: 2, RunningNow: 2}}, nil
}

func (c *fakeCluster) Event(_ context.Context, warning bool, reason fault.Reason, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, string(reason))
}

func (c *fakeCluster) RestoreCR(_ context.Context, version, imageTag, _ string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.installed != version || c.underWay != "" || c.imageTag == imageTag {
		return false, nil
	}
	c.imageTag = imageTag
	c.restored++
	return true, nil
}

func (c *fakeCluster) steps() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.ran {
		out = append(out, s.To)
	}
	return out
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func realCatalog(context.Context) (*planner.Catalog, error) {
	return planner.ParseCatalogText(releases.Text)
}

const header = "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n"

type world struct {
	t       testing.TB
	repo    *fakeRepo
	cluster *fakeCluster
	memory  *fakeMemory
	clock   *clock
	agent   *agent.Agent
}

func newWorld(t testing.TB, spec string, installed string) *world {
	w := &world{t: t, repo: &fakeRepo{}, cluster: &fakeCluster{installed: installed, operator: installed}, memory: &fakeMemory{},
		clock: &clock{t: time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC)}}
	w.repo.commit(map[string]string{"kubevirt.yaml": header + spec})
	w.agent = w.newAgent()
	return w
}

func (w *world) newAgent() *agent.Agent {
	return agent.New(agent.Config{ClusterName: "prod-east", Clock: w.clock.now, Memory: w.memory}, w.repo, w.cluster, realCatalog)
}

// settle reconciles until the agent has nothing more to do at once.
func (w *world) settle() (agent.Status, error) {
	for i := 0; i < 100; i++ {
		again, err := w.agent.Reconcile(context.Background())
		if err != nil || !again {
			return w.status(), err
		}
	}
	return w.status(), errors.New("did not settle")
}

func (w *world) status() agent.Status {
	w.t.Helper()
	s, err := agent.ParseStatus([]byte(w.repo.file("status/prod-east.yaml")))
	if err != nil {
		w.t.Fatalf("the status file does not parse: %v", err)
	}
	return s
}

func (w *world) desire(spec string) { w.repo.commit(map[string]string{"kubevirt.yaml": header + spec}) }

func stepStates(s agent.Status) string {
	if s.Plan == nil {
		return ""
	}
	var out []string
	for _, st := range s.Plan.Steps {
		out = append(out, st.To+":"+string(st.State))
	}
	return strings.Join(out, " ")
}
