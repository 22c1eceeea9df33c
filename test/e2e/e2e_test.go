package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/stack"
	"github.com/kvgitops/kvgitops/test/testenv"
)

func hops(pairs ...string) []simulator.Hop {
	out := []simulator.Hop{{To: pairs[0]}}
	for i := 1; i < len(pairs); i++ {
		out = append(out, simulator.Hop{From: pairs[i-1], To: pairs[i]})
	}
	return out
}

func TestInstallAndStrictMultiHopUpgrade(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.1.0\n", "install")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.1.0")
	e.commit("  version: v1.3.0\n", "upgrade")
	st := e.succeeded("v1.3.0")
	if got, want := e.st.Sim.CompletedHops(), hops("v1.1.0", "v1.1.1", "v1.2.2", "v1.3.0"); !slices.Equal(got, want) {
		t.Errorf("hops %v, want %v", got, want)
	}
	if st.History[0].Steps != 3 || st.History[0].Result != "Succeeded" || st.History[1].Action != "Install" {
		t.Errorf("history %+v", st.History)
	}
	log, _ := e.st.Git.Log("status/e2e.yaml")
	if len(log) < 5 {
		t.Errorf("expected a status commit per hop, got %v", log)
	}
}

// TestImageTagModeWithRBACFallback: v1.8 grants rules v1.7's operator
// lacks; the agent updates the operator first and says why.
func TestImageTagModeWithRBACFallback(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.7.4\n  method: ImageTag\n", "install pinned")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.7.4")
	e.commit("  version: v1.8.4\n  method: ImageTag\n", "upgrade by imageTag")
	st := e.succeeded("v1.8.4")
	if e.st.Sim.Count(simulator.RBACForbidden) == 0 {
		t.Error("the simulator never refused the RBAC, so the fallback was not exercised")
	}
	run := st.History[0]
	if run.To != "v1.8.4" || run.Result != "Succeeded" {
		t.Errorf("run %+v", run)
	}
	// The committed status says the operator had to go first, and why.
	if st.Plan == nil || len(st.Plan.Steps) != 1 || !st.Plan.Steps[0].OperatorFirst ||
		!strings.Contains(strings.Join(st.Plan.Steps[0].Notes, " "), "attempting to grant RBAC permissions not currently held") {
		t.Errorf("committed plan %+v: want the step marked operatorFirst with the RBAC reason in its notes", st.Plan)
	}
	if st.Observed.Mode != "ImageTag" || st.Observed.OperatorVersion != "v1.8.4" {
		t.Errorf("observed %+v", st.Observed)
	}
}

func TestSuspendAndResume(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.7.4\n  suspend: true\n", "suspended install")
	e.agent(stack.AgentOptions{})
	e.wait(stack.Phase(agent.PhaseSuspended, ""), "Suspended")
	e.polls(3)
	if n := len(e.st.Sim.Transitions()); n != 0 {
		t.Fatalf("a suspended agent changed the cluster: %v", e.st.Sim.Transitions())
	}
	e.commit("  version: v1.7.4\n", "resume")
	e.succeeded("v1.7.4")
}

func TestManualApproval(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.6.6\n", "install")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.6.6")
	e.commit("  version: v1.8.4\n  approval: Manual\n", "plan an upgrade")
	st := e.wait(stack.Phase(agent.PhaseAwaitingApproval, "v1.6.6"), "AwaitingApproval")
	id := st.Plan.ID
	if len(st.Plan.Steps) != 2 || !strings.Contains(st.Message, id) {
		t.Fatalf("plan %+v, message %q", st.Plan, st.Message)
	}
	e.commit("  version: v1.8.4\n  approval: Manual\n  approvedPlan: \"deadbeef\"\n", "a stale approval")
	e.wait(func(s agent.Status) bool {
		return s.Phase == agent.PhaseAwaitingApproval && strings.Contains(s.Message, "deadbeef")
	}, "stale approval")
	if n := e.st.Sim.Count(simulator.HopStarted); n != 0 {
		t.Fatalf("a stale approval started %d hops", n)
	}
	e.commit("  version: v1.8.4\n  approval: Manual\n  approvedPlan: \""+id+"\"\n", "approve "+id)
	e.succeeded("v1.8.4")
	if got, want := e.st.Sim.CompletedHops(), hops("v1.6.6", "v1.7.4", "v1.8.4"); !slices.Equal(got, want) {
		t.Errorf("hops %v", got)
	}
}

func TestMaintenanceWindow(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.6.6\n", "install")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.6.6")
	// A window opening at the next minute boundary, 10 minutes long; the
	// agent must wait for it and start on its own when it opens. At least
	// 30 s away: under make test's load the agent has read a commit 8 s
	// after it was made, inside a window that opened 6 s after it.
	now := time.Now().UTC()
	open := now.Truncate(time.Minute).Add(time.Minute)
	if open.Sub(now) < 30*time.Second {
		open = open.Add(time.Minute)
	}
	sched := strings.TrimLeft(open.Format("4 15"), "0") + " * * *"
	if open.Minute() == 0 {
		sched = "0" + sched
	}
	spec := "  version: v1.7.4\n  hopTimeout: 2m\n  maintenanceWindow: {schedule: \"" + sched + "\", duration: 10m, timeZone: UTC}\n"
	e.commit(spec, "upgrade in the window")
	st := e.wait(stack.Phase(agent.PhaseWaitingForWindow, "v1.6.6"), "WaitingForWindow")
	if !strings.Contains(st.Message, open.Format(time.RFC3339)) {
		t.Errorf("message %q should name the opening %s", st.Message, open.Format(time.RFC3339))
	}
	if e.st.Sim.Count(simulator.HopStarted) != 0 {
		t.Fatal("a hop started outside the window")
	}
	time.Sleep(time.Until(open)) // the success is waited for from the opening
	st = e.succeeded("v1.7.4")
	var started time.Time
	for _, tr := range e.st.Sim.Transitions() {
		if tr.Kind == simulator.OperatorRolloutStarted && tr.To == "v1.7.4" {
			started = tr.At
		}
	}
	if started.Before(open) {
		t.Errorf("the hop started at %s, before the window opened at %s", started, open)
	}
}

// TestTeardownWithLeftovers: KubeVirt v0.26.0, installed long ago on a
// cluster since upgraded past Kubernetes 1.22 (its manifest can no longer
// be applied, its CRD is stored as v1), leaves virt-api's objects behind.
func TestTeardownWithLeftovers(t *testing.T) {
	e := setup(t, stack.Options{})
	e.installAsStored("v0.26.0")
	e.commit("  state: Absent\n", "remove KubeVirt")
	e.agent(stack.AgentOptions{})
	st := e.wait(func(s agent.Status) bool {
		return s.Phase == agent.PhaseSucceeded && s.Desired != nil && s.Desired.State == "Absent"
	}, "teardown")
	if e.st.Sim.Count(simulator.LeftoversKept) != 1 {
		t.Error("v0.26.0 should have left its APIService and webhooks behind")
	}
	run := st.History[0]
	if run.Action != "Teardown" || run.Result != "Succeeded" {
		t.Errorf("run %+v", run)
	}
	leftovers := []string{"v1alpha3.subresources.kubevirt.io", "virt-api-validator", "virt-api-mutator"}
	for _, l := range leftovers {
		if e.exists(l) {
			t.Errorf("leftover %s survived the teardown", l)
		}
	}
}

// TestInvalidDesiredFileThenValid also carries the secrets canary: the Git
// password and the releases API token are canaries, and no form of either
// may appear in any log line, Kubernetes Event or committed status file.
func TestInvalidDesiredFileThenValid(t *testing.T) {
	e := setup(t, stack.Options{GitUser: "kvgitops", GitPassword: canaryPassword})
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte(canaryToken), 0o600); err != nil {
		t.Fatal(err)
	}
	defer e.noSecretsLeaked("kvgitops")
	e.commit("  version: 1.10\n", "a typo")
	e.agent(stack.AgentOptions{Extra: []string{"--release-token-file", token}})
	st := e.wait(stack.Phase(agent.PhaseInvalid, ""), "Invalid")
	if !strings.Contains(st.Message, "spec.version") || st.Reason != "InvalidDesiredState" {
		t.Errorf("invalid status %s %q", st.Reason, st.Message)
	}
	e.polls(3)
	if len(e.st.Sim.Transitions()) != 0 {
		t.Fatal("an invalid desired file changed the cluster")
	}
	e.commit("  version: \"v1.1.1\"\n", "fix the typo")
	e.succeeded("v1.1.1")
}

func TestKilledMidHopResumes(t *testing.T) {
	e := setup(t, stack.Options{RolloutDelay: 500 * time.Millisecond})
	e.commit("  version: v1.5.3\n", "install")
	a := e.agent(stack.AgentOptions{Name: "first"})
	e.succeeded("v1.5.3")
	a.Stop()
	// Killed in the middle of applying the second hop's operator manifest.
	e.commit("  version: v1.7.4\n", "upgrade two minors")
	crashing := e.agent(stack.AgentOptions{Name: "crashing", Extra: []string{"--failpoint", "applied-object-5"}})
	select {
	case <-crashing.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("the failpoint never fired")
	}
	if crashing.ExitCode() != 137 {
		t.Fatalf("exit code %d, want 137", crashing.ExitCode())
	}
	// Killed again while waiting for the next hop to complete.
	e.st.Sim.SlowHops(2 * time.Second)
	waiting := e.agent(stack.AgentOptions{Name: "waiting"})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := waiting.WaitLine(ctx, func(l stack.Line) bool {
		return l.Msg() == "Step progress" && strings.Contains(l.Str("message"), "waiting for observedKubeVirtVersion")
	}); err != nil {
		t.Fatal(err)
	}
	waiting.Kill()
	e.st.Sim.SlowHops(0)
	e.agent(stack.AgentOptions{Name: "final"})
	st := e.succeeded("v1.7.4")
	if got, want := e.st.Sim.CompletedHops(), hops("v1.5.3", "v1.6.6", "v1.7.4"); !slices.Equal(got, want) {
		t.Errorf("hops %v, want %v (none repeated or skipped)", got, want)
	}
	// F4: the hop's deadline is computed from its first recorded intent,
	// not restarted by each process that resumed it: the step's start is
	// the first attempt's, which the crashing process made.
	first := map[int]agent.Entry{}
	for _, en := range st.Journal {
		if f, ok := first[en.Step]; en.PlanID == st.Plan.ID && (!ok || en.StartedAt.Before(f.StartedAt.Time)) {
			first[en.Step] = en
		}
	}
	for i, s := range st.Plan.Steps {
		f, ok := first[i+1]
		if !ok || s.StartedAt == nil || !s.StartedAt.Equal(f.StartedAt.Time) {
			t.Errorf("step %d/%d started at %v, its first attempt (%+v) at %v: the deadline moved", i+1, len(st.Plan.Steps), s.StartedAt, f, f.StartedAt)
		}
	}
	if attempts := len(st.Journal); attempts < 4 {
		t.Errorf("%d attempts in the journal, want the crashed, the killed and the final ones: %+v", attempts, st.Journal)
	}
}

func TestStatusPushConflictKeepsBothCommits(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.7.4\n", "install")
	var raced atomic.Bool
	e.st.Git.Filter(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/git-receive-pack") && raced.CompareAndSwap(false, true) {
			if _, err := e.st.Human.CommitFile("README.md", []byte("a human was here\n"), "human edit during the agent's push"); err != nil {
				t.Error(err)
			}
		}
		return false
	})
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.7.4")
	log, _ := e.st.Git.Log("")
	human, agentCommits := 0, 0
	for _, l := range log {
		switch {
		case strings.Contains(l, "human edit during the agent's push"):
			human++
		case strings.Contains(l, "kvgitops: status("):
			agentCommits++
		}
	}
	if human != 1 || agentCommits < 2 || !raced.Load() {
		t.Errorf("log %v: want the human commit and the agent's status commits", log)
	}
	if got, _ := e.st.Git.Show("main", "README.md"); got != "a human was here" {
		t.Errorf("the human's file %q", got)
	}
}

func TestLeaderElectionOnlyOneActs(t *testing.T) {
	e := setup(t, stack.Options{RolloutDelay: 300 * time.Millisecond})
	e.commit("  version: v1.6.6\n", "install")
	le := []string{"--leader-elect", "--leader-elect-namespace", "kvgitops",
		"--leader-elect-lease-duration", "3s", "--leader-elect-renew-deadline", "2s", "--leader-elect-retry-period", "500ms"}
	a := e.agent(stack.AgentOptions{Name: "a", Extra: le})
	b := e.agent(stack.AgentOptions{Name: "b", Extra: le})
	e.succeeded("v1.6.6")
	leaders := 0
	for _, x := range []*stack.Agent{a, b} {
		for _, l := range x.Lines() {
			if l.Msg() == "Leading" {
				leaders++
			}
		}
	}
	if leaders != 1 {
		t.Fatalf("%d agents lead, want 1", leaders)
	}
	if n := e.st.Sim.Count(simulator.InstallStarted); n != 1 {
		t.Errorf("%d installs started", n)
	}
	// The leader dies; the standby takes over and carries on.
	leader, standby := a, b
	if !slices.ContainsFunc(a.Lines(), func(l stack.Line) bool { return l.Msg() == "Leading" }) {
		leader, standby = b, a
	}
	leader.Kill()
	e.commit("  version: v1.7.4\n", "upgrade after failover")
	e.succeeded("v1.7.4")
	if !slices.ContainsFunc(standby.Lines(), func(l stack.Line) bool { return l.Msg() == "Leading" }) {
		t.Error("the standby never took over")
	}
}

func TestSplitBrainStaleLeaderDoesNotAct(t *testing.T) {
	e := setup(t, stack.Options{RolloutDelay: 300 * time.Millisecond})
	e.commit("  version: v1.6.6\n", "install")
	le := []string{"--leader-elect", "--leader-elect-namespace", "kvgitops",
		"--leader-elect-lease-duration", "2s", "--leader-elect-renew-deadline", "1500ms", "--leader-elect-retry-period", "300ms"}
	a := e.agent(stack.AgentOptions{Name: "a", Extra: le})
	e.succeeded("v1.6.6")
	// The push is seen in Git a moment before the leader logs it; pausing
	// in between would let that line appear after waking.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := a.WaitLine(ctx, func(l stack.Line) bool {
		return l.Msg() == "Status committed" && l.Str("phase") == string(agent.PhaseSucceeded)
	}); err != nil {
		t.Fatal(err)
	}
	// Pause the leader past its lease; a second agent takes over.
	if err := a.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	b := e.agent(stack.AgentOptions{Name: "b", Extra: le})
	if _, err := b.WaitLine(ctx, func(l stack.Line) bool { return l.Msg() == "Leading" }); err != nil {
		t.Fatal(err)
	}
	e.commit("  version: v1.7.4\n", "upgrade while the old leader sleeps")
	e.succeeded("v1.7.4")
	// The old leader wakes, finds it lost the lease, and exits without
	// writing anything: no step, no status commit.
	before := len(a.Lines())
	if err := a.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the stale leader kept running")
	}
	for _, l := range a.Lines()[before:] {
		if l.Msg() == "Status committed" || l.Msg() == "Step started" {
			t.Errorf("the stale leader wrote after waking: %v", l)
		}
	}
	if got, want := e.st.Sim.CompletedHops(), hops("v1.6.6", "v1.7.4"); !slices.Equal(got, want) {
		t.Errorf("hops %v, want %v", got, want)
	}
}

// TestAStaleLeaderPausedMidApplyWritesNothing is the fencing fault (F12): the
// leader stops itself between two objects of a manifest apply, a standby
// takes over and finishes that hop and the next, and the old leader is
// resumed. The apiserver's audit log is the oracle: after it resumes, the
// old leader makes no write at all (its guard refuses each before it is
// sent), and it commits no status.
func TestAStaleLeaderPausedMidApplyWritesNothing(t *testing.T) {
	e := setup(t, stack.Options{RolloutDelay: 300 * time.Millisecond})
	le := []string{"--leader-elect", "--leader-elect-namespace", "kvgitops",
		"--leader-elect-lease-duration", "2s", "--leader-elect-renew-deadline", "1500ms", "--leader-elect-retry-period", "300ms"}
	e.commit("  version: v1.6.6\n", "install")
	first := e.agent(stack.AgentOptions{Name: "installer", Extra: le})
	e.succeeded("v1.6.6")
	first.Stop()

	a := e.agent(stack.AgentOptions{Name: "a", Extra: append(le, "--failpoint", "applied-object-3:stop")})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	leading, err := a.WaitLine(ctx, func(l stack.Line) bool { return l.Msg() == "Leading" })
	if err != nil {
		t.Fatal(err)
	}
	id := leading.Str("identity")
	e.commit("  version: v1.7.4\n", "upgrade")
	if _, err := a.WaitLine(ctx, func(l stack.Line) bool { return l.Msg() == "Failpoint reached, stopping" }); err != nil {
		t.Fatal(err)
	}
	before, err := testenv.AuditLog(auditDir, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) == 0 {
		t.Fatalf("no write by %s in the audit log before the pause: the oracle sees nothing", id)
	}

	b := e.agent(stack.AgentOptions{Name: "b", Extra: le})
	if _, err := b.WaitLine(ctx, func(l stack.Line) bool { return l.Msg() == "Leading" }); err != nil {
		t.Fatal(err)
	}
	e.succeeded("v1.7.4")
	e.commit("  version: v1.8.4\n", "the next hop, while the old leader sleeps")
	e.succeeded("v1.8.4")
	statusCommits, _ := e.st.Git.Log("status/e2e.yaml")

	resumed := time.Now()
	lines := len(a.Lines())
	if err := a.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the stale leader kept running")
	}
	after, err := testenv.AuditLog(auditDir, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range after {
		if ev.At.After(resumed) {
			t.Errorf("the stale leader wrote after resuming: %s", ev)
		}
	}
	refused := false
	for _, l := range a.Lines()[lines:] {
		refused = refused || strings.Contains(fmt.Sprint(l), "not leading")
		if l.Msg() == "Status committed" {
			t.Errorf("the stale leader committed a status after resuming: %v", l)
		}
	}
	if !refused {
		t.Errorf("the stale leader's log does not show a refused write: %v", a.Lines()[lines:])
	}
	if now, _ := e.st.Git.Log("status/e2e.yaml"); len(now) != len(statusCommits) {
		t.Errorf("status commits went from %d to %d after the stale leader resumed", len(statusCommits), len(now))
	}
	if got, want := e.st.Sim.CompletedHops(), hops("v1.6.6", "v1.7.4", "v1.8.4"); !slices.Equal(got, want) {
		t.Errorf("hops %v, want %v", got, want)
	}
}

// TestNothingIsLostWhenKilledAtAnyPoint kills the agent (exit 137, as a
// SIGKILL) at each point between a step's intent, its action, its outcome
// and the status push, then starts a fresh one. docs/reliability.md's "nothing
// lost" invariants are checked against the apiserver's audit log and the
// status file in Git: every attempt is in the status file with an outcome
// (Interrupted when the process died before recording one), none is
// removed, and the killed process touched KubeVirt only after its intent
// was durable in the journal ConfigMap.
func TestNothingIsLostWhenKilledAtAnyPoint(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.4.0\n", "install")
	installer := e.agent(stack.AgentOptions{Name: "installer"})
	e.succeeded("v1.4.0")
	installer.Stop()
	kills := []*kill{
		{point: "planned", target: "v1.5.0", want: ""}, // F1: nothing recorded, nothing applied
		{point: "intent-recorded", target: "v1.6.0", want: agent.EntryInterrupted},
		{point: "applied-object-3", target: "v1.7.0", want: agent.EntryInterrupted},
		{point: "step-finished", target: "v1.8.0", want: agent.EntryInterrupted},
		{point: "outcome-recorded", target: "v1.8.4", want: agent.StepSucceeded},
	}
	fresh := e.killAtEachPoint(kills)
	// Drained: what the status file holds leaves the memory's journal
	// (right after the push; the last agent is still running).
	var pending []agent.Entry
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if pending = e.memory().Journal; len(pending) == 0 {
			break
		}
	}
	if len(pending) != 0 {
		t.Errorf("the memory still holds pushed entries as unpublished: %+v", pending)
	}
	fresh.Stop()

	text, err := e.st.Git.Show("main", "status/e2e.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := agent.ParseStatus([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	e.checkAttempts(st.Journal)
	for _, k := range kills {
		e.checkKilled(st.Journal, k)
	}
}

// kill is where TestNothingIsLostWhenKilledAtAnyPoint kills an agent, and
// what the attempt it was making must then be.
type kill struct {
	point, target, identity string
	want                    agent.StepState // the killed attempt's state in the status file
}

// killAtEachPoint starts an agent that dies at each kill's failpoint while
// upgrading to its target, then a fresh agent that finishes the upgrade;
// it returns the last fresh agent, still running.
func (e *e2e) killAtEachPoint(kills []*kill) *stack.Agent {
	t := e.t
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var fresh *stack.Agent
	for _, k := range kills {
		if fresh != nil {
			fresh.Stop() // one agent at a time: two without leader election race for the same step
		}
		a := e.agent(stack.AgentOptions{Name: "killed-at-" + k.point, Extra: []string{"--failpoint", k.point}})
		start, err := a.WaitLine(ctx, func(l stack.Line) bool { return l.Msg() == "Agent starting" })
		if err != nil {
			t.Fatal(err)
		}
		k.identity = start.Str("identity")
		e.commit("  version: "+k.target+"\n  pathPolicy: LatestPatch\n", "upgrade, killed at "+k.point)
		select {
		case <-a.Done():
		case <-ctx.Done():
			t.Fatalf("the agent never reached %s", k.point)
		}
		fresh = e.agent(stack.AgentOptions{Name: "after-" + k.point})
		e.succeeded(k.target)
	}
	return fresh
}

// checkAttempts: every attempt in the status file has an outcome, names
// one of the agents that ran (invariant 4) and a plan's steps are
// attempted in order.
func (e *e2e) checkAttempts(journal []agent.Entry) {
	t := e.t
	actors := map[string]bool{}
	for _, a := range e.agents {
		if l := a.Lines(); len(l) > 0 && l[0].Msg() == "Agent starting" {
			actors[l[0].Str("identity")] = true
		}
	}
	lastStep := map[string]agent.Entry{} // per plan, in the order attempts started
	for _, en := range slices.Backward(journal) {
		t.Logf("journal: %s step %d/%d %s %s->%s %s by %s %s", en.ID, en.Step, en.Of, en.Type, en.From, en.To, en.State, en.By, en.Message)
		if en.State == agent.StepRunning {
			t.Errorf("an attempt without an outcome in the status file: %+v", en)
		}
		if !actors[en.By] {
			t.Errorf("attempt %s names actor %q, which is none of the agents that ran (%v)", en.ID, en.By, actors)
		}
		if prev, ok := lastStep[en.PlanID]; ok && en.Step < prev.Step {
			t.Errorf("plan %s: step %d attempted after step %d", en.PlanID, en.Step, prev.Step)
		}
		lastStep[en.PlanID] = en
	}
}

// checkKilled: the killed agent's attempt is in the status file in the
// state k wants, and the apiserver's audit log shows it touched nothing
// before its intent was in the memory (or, killed before any intent,
// nothing at all but draining the journal).
func (e *e2e) checkKilled(journal []agent.Entry, k *kill) {
	t := e.t
	var mine []agent.Entry
	for _, en := range journal {
		if en.By == k.identity {
			mine = append(mine, en)
		}
	}
	writes, err := testenv.AuditLog(auditDir, k.identity)
	if err != nil {
		t.Fatal(err)
	}
	isMemory := func(w testenv.AuditEvent) bool {
		return w.ObjectRef.Resource == "configmaps" && w.ObjectRef.Name == stack.MemoryConfigMap
	}
	if k.want == "" {
		other := slices.DeleteFunc(slices.Clone(writes), isMemory)
		if len(mine) != 0 || len(other) != 0 {
			t.Errorf("killed at %s: attempts %+v, writes %v, want none", k.point, mine, other)
		}
		return
	}
	if len(mine) != 1 || mine[0].State != k.want {
		t.Errorf("killed at %s: its attempts in the status file %+v, want one %s", k.point, mine, k.want)
	}
	intent := false
	for _, w := range writes {
		switch {
		case isMemory(w):
			intent = intent || w.ResponseStatus.Code < 300 && holdsIntent(t, w, k.identity)
		case w.ObjectRef.Resource == "events":
		case !intent:
			t.Errorf("killed at %s: %s before its intent was in the memory", k.point, w)
		}
	}
}

// holdsIntent reports whether a write of the memory ConfigMap (its body,
// from the audit log) holds a Running attempt of the agent identity.
func holdsIntent(t *testing.T, w testenv.AuditEvent, identity string) bool {
	t.Helper()
	var cm corev1.ConfigMap
	if err := json.Unmarshal(w.RequestObject, &cm); err != nil {
		t.Fatalf("the audit log has no body for %s: %v", w, err)
	}
	m, err := agent.ParseMemory([]byte(cm.Data["memory.json"]))
	if err != nil {
		t.Fatalf("memory in %s: %v", w, err)
	}
	return slices.ContainsFunc(m.Journal, func(e agent.Entry) bool { return e.By == identity && e.State == agent.StepRunning })
}

// TestTheAgentNeedsNoWritableDisk (RELIABILITY F25): the agent runs with a
// read-only root file system (a mount namespace of its own), as the
// Deployment's readOnlyRootFilesystem asks: it installs and upgrades, so
// no step needs a disk (Git objects live in memory).
func TestTheAgentNeedsNoWritableDisk(t *testing.T) {
	e := setup(t, stack.Options{})
	readOnly := []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", `mount --bind -o ro / / && exec "$0" "$@"`}
	if err := exec.Command(readOnly[0], append(readOnly[1:], "true")...).Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot make a read-only mount namespace here: %v", err)
		}
		t.Skipf("cannot make a read-only mount namespace here: %v", err)
	}
	e.commit("  version: v1.7.4\n", "install")
	a := e.agent(stack.AgentOptions{Wrap: readOnly})
	e.succeeded("v1.7.4")
	e.commit("  version: v1.8.4\n", "upgrade")
	e.succeeded("v1.8.4")
	for _, l := range a.Lines() {
		if strings.Contains(fmt.Sprint(l), "read-only file system") {
			t.Errorf("the agent tried to write to disk: %v", l)
		}
	}
}

// TestSIGTERMMidHopHandsOver (F21): a drained node stops the leader mid-hop
// with SIGTERM: it exits promptly, releases the Lease (a standby does not
// wait for it to expire), and the standby finishes the hop; the journal
// shows the cut-short attempt.
func TestSIGTERMMidHopHandsOver(t *testing.T) {
	e := setup(t, stack.Options{RolloutDelay: 3 * time.Second})
	le := []string{"--leader-elect", "--leader-elect-namespace", "kvgitops",
		"--leader-elect-lease-duration", "15s", "--leader-elect-renew-deadline", "10s", "--leader-elect-retry-period", "1s"}
	e.commit("  version: v1.7.4\n", "install")
	a := e.agent(stack.AgentOptions{Name: "a", Extra: le})
	e.succeeded("v1.7.4")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	e.commit("  version: v1.8.4\n", "upgrade")
	if _, err := a.WaitLine(ctx, func(l stack.Line) bool { return l.Msg() == "Step started" && l.Str("to") == "v1.8.4" }); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the leader did not exit within 10 s of SIGTERM")
	}
	lease, err := kubernetes.NewForConfigOrDie(e.st.Admin).CoordinationV1().Leases("kvgitops").Get(t.Context(), "kvgitops", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("the Lease is still held by %q after SIGTERM", *h)
	}
	b := e.agent(stack.AgentOptions{Name: "b", Extra: le})
	if _, err := b.WaitLine(ctx, func(l stack.Line) bool { return l.Msg() == "Leading" }); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(stopped); d > 14*time.Second {
		t.Errorf("the standby led %s after SIGTERM: it waited for the 15 s lease to expire", d)
	}
	st := e.succeeded("v1.8.4")
	var states []agent.StepState
	for _, en := range st.Journal {
		if en.To == "v1.8.4" {
			states = append(states, en.State)
		}
	}
	if !slices.Contains(states, agent.StepSucceeded) || len(states) < 2 {
		t.Errorf("the journal of the hop %v: want the cut-short attempt and the one that finished: %+v", states, st.Journal)
	}
}

// TestAForbiddenPushDoesNotStopTheCluster (RELIABILITY F11): branch
// protection refuses the agent's pushes. The cluster is still reconciled,
// and the failure is visible where operators look: a Warning Event, once.
func TestAForbiddenPushDoesNotStopTheCluster(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.7.4\n", "install")
	e.st.Git.Filter(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.RawQuery, "git-receive-pack") || strings.HasSuffix(r.URL.Path, "git-receive-pack") {
			http.Error(w, "protected branch", http.StatusForbidden)
			return true
		}
		return false
	})
	e.agent(stack.AgentOptions{})
	if err := e.st.Sim.WaitFor(t.Context(), simulator.Has(simulator.HopCompleted, "v1.7.4")); err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(e.st.Admin)
	deadline := time.Now().Add(time.Minute)
	for {
		evs, err := kube.CoreV1().Events("").List(t.Context(), metav1.ListOptions{FieldSelector: "reason=StatusPushForbidden"})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs.Items) == 1 && evs.Items[0].Type == "Warning" {
			break
		}
		if len(evs.Items) > 1 || time.Now().After(deadline) {
			t.Fatalf("%d StatusPushForbidden Events, want exactly one Warning", len(evs.Items))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if log, _ := e.st.Git.Log("status/e2e.yaml"); len(log) != 0 {
		t.Errorf("status commits got through a forbidden branch: %v", log)
	}
}

// TestCredentialsInTheRepositoryAreIgnored (B43): a kubeconfig and Git
// credentials committed beside the desired file are never read: the
// cluster they name (a listener of this test) sees no connection.
func TestCredentialsInTheRepositoryAreIgnored(t *testing.T) {
	e := setup(t, stack.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var dialed atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dialed.Add(1)
			_ = c.Close()
		}
	}()
	kubeconfig := "apiVersion: v1\nkind: Config\nclusters:\n- name: x\n  cluster: {server: https://" + ln.Addr().String() + "}\ncontexts:\n- name: x\n  context: {cluster: x, user: x}\ncurrent-context: x\nusers:\n- name: x\n  user: {token: stolen}\n"
	if _, err := e.st.Human.CommitFiles("committed by mistake", map[string][]byte{
		"kubeconfig": []byte(kubeconfig), ".kube/config": []byte(kubeconfig),
		".git-credentials": []byte("https://user:pw@" + ln.Addr().String() + "\n"),
		"kubevirt.yaml":    stack.DesiredFile("  version: v1.7.4\n"),
	}); err != nil {
		t.Fatal(err)
	}
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.7.4")
	if n := dialed.Load(); n != 0 {
		t.Errorf("the cluster of a kubeconfig in the repository was dialed %d times", n)
	}
}

// TestARewoundBranchAppliesNothing (B30, F24): the server serves an older
// head than the one applied (a force-push, a stale replica), whose content
// (state: Absent) would tear KubeVirt down: the agent stalls with
// HistoryRewritten and the cluster stays where it is, in this process and
// in the next leader's.
func TestARewoundBranchAppliesNothing(t *testing.T) {
	e := setup(t, stack.Options{})
	old := e.commit("  state: Absent\n", "no KubeVirt yet")
	first := e.agent(stack.AgentOptions{Name: "first"})
	e.wait(func(s agent.Status) bool {
		return s.Phase == agent.PhaseIdle && s.Desired != nil && s.Desired.State == "Absent"
	}, "Absent, nothing to do")
	e.commit("  version: v1.7.4\n", "install")
	e.succeeded("v1.7.4")
	hops := e.st.Sim.CompletedHops()
	if err := e.st.Git.ForcePush(old); err != nil {
		t.Fatal(err)
	}
	st := e.wait(func(s agent.Status) bool { return s.Reason == "HistoryRewritten" }, "HistoryRewritten")
	if st.Phase != agent.PhaseInvalid {
		t.Errorf("phase %s", st.Phase)
	}
	e.polls(3)
	// The next leader keeps the anchor: its memory in the cluster says what
	// the branch must descend from, whatever Git now holds.
	first.Stop()
	second := e.agent(stack.AgentOptions{Name: "second"})
	id := e.identity(second)
	e.polls(4)
	e.wait(func(s agent.Status) bool { return s.Reason == "HistoryRewritten" }, "HistoryRewritten after a restart")
	if got := e.st.Sim.CompletedHops(); !slices.Equal(got, hops) || e.st.Sim.Count(simulator.DeletionStarted) != 0 {
		t.Errorf("after the rewind: hops %v (want %v), deletions %d", got, hops, e.st.Sim.Count(simulator.DeletionStarted))
	}
	if w := e.kubevirtWrites(id); len(w) != 0 {
		t.Errorf("the new leader wrote the KubeVirt CR: %v", w)
	}
	if len(e.st.Sim.Violations()) != 0 {
		t.Errorf("violations: %v", e.st.Sim.Violations())
	}
}
