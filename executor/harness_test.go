package executor_test

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/release"
	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

var kvGVR = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1alpha3", Resource: "kubevirts"}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

type harness struct {
	admin *rest.Config
	dyn   dynamic.Interface
	sim   *simulator.Simulator
	rel   *releases.Server
	exec  *executor.Executor
}

type harnessOptions struct {
	rollout   time.Duration
	strategy  time.Duration
	failGrace time.Duration
	admin     bool // run the executor as admin instead of the deploy/ ServiceAccount
	// registries are configured mirrors (--release-image-registry).
	registries []string
	// hook is the executor's hook (fault injection at named points).
	hook func(point string)
}

// start gives a test a cluster without KubeVirt, a simulator, a release
// server, and an executor that acts as the ServiceAccount of deploy/ with
// exactly the RBAC deploy/ grants.
func start(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	env := testenv.Get(t)
	ctx := context.Background()
	if err := simulator.Wipe(ctx, env.Config); err != nil {
		t.Fatalf("wipe: %v", err)
	}
	rbac, err := os.ReadFile("../deploy/rbac-installer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.Apply(ctx, env.Config, rbac); err != nil {
		t.Fatalf("apply deploy/ RBAC: %v", err)
	}
	applyAdmissionPolicy(t, env, o.registries...)
	if o.rollout == 0 {
		o.rollout = 100 * time.Millisecond
	}
	if o.strategy == 0 {
		o.strategy = 20 * time.Millisecond
	}
	sim, err := simulator.New(env.Config, simulator.Options{RolloutDelay: o.rollout, StrategyDelay: o.strategy, VMIShutdownDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	rel := releases.NewServer(nil)
	t.Cleanup(rel.Close)
	rc, err := release.New(release.Config{
		ReleasesURL: rel.ReleasesURL(), ManifestBaseURL: rel.DownloadBaseURL(),
		HTTP:       release.HTTPConfig{AllowedNetworks: loopback, RootCAs: rel.CertPool()},
		Registries: o.registries,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := env.Impersonate("kvgitops", "kvgitops")
	if o.admin {
		cfg = env.Config
	}
	if o.failGrace == 0 {
		o.failGrace = 500 * time.Millisecond
	}
	ex, err := executor.New(cfg, executor.Config{Releases: rc, FailGrace: o.failGrace, Hook: o.hook})
	if err != nil {
		t.Fatal(err)
	}
	admin := rest.CopyConfig(env.Config)
	admin.WarningHandler = rest.NoWarnings{}
	h := &harness{admin: admin, dyn: dynamic.NewForConfigOrDie(admin), sim: sim, rel: rel, exec: ex}
	t.Cleanup(func() { h.noViolations(t) }) // the executor never drives KubeVirt outside its rules
	return h
}

func (h *harness) run(t testing.TB, step planner.Step, deadline time.Duration) (executor.StepResult, error) {
	t.Helper()
	return h.exec.Run(context.Background(), step, executor.StepOptions{Deadline: time.Now().Add(deadline)})
}

func (h *harness) mustRun(t testing.TB, step planner.Step) executor.StepResult {
	t.Helper()
	res, err := h.run(t, step, time.Minute)
	if err != nil {
		t.Fatalf("run %s: %v", step, err)
	}
	return res
}

func (h *harness) install(t testing.TB, tag string, method planner.Method) {
	t.Helper()
	h.mustRun(t, planner.Step{Type: planner.StepInstall, To: tag, Method: method})
}

func (h *harness) observe(t testing.TB) *executor.Observation {
	t.Helper()
	o, err := h.exec.Observe(context.Background())
	if err != nil {
		t.Fatalf("observe: %v", err)
	}
	return o
}

func (h *harness) patchCR(t testing.TB, patch string) {
	t.Helper()
	if _, err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Patch(context.Background(), "kubevirt", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch CR: %v", err)
	}
}

func upgrade(from, to string, m planner.Method) planner.Step {
	return planner.Step{Type: planner.StepUpgrade, From: from, To: to, Method: m}
}

// installAsStored stands up KubeVirt tag as a cluster holds it that
// installed it long ago, before Kubernetes 1.22 (a v1beta1 CRD stored as
// v1): the release's manifest and CR applied by an administrator, not by
// the executor, which would refuse the v1beta1 CRD.
func (h *harness) installAsStored(t testing.TB, tag string) {
	t.Helper()
	ctx := context.Background()
	if err := testenv.Apply(ctx, h.admin, releases.AsStoredSince122(tag)); err != nil {
		t.Fatalf("apply the %s operator: %v", tag, err)
	}
	if err := testenv.Apply(ctx, h.admin, releases.CRManifest(tag)); err != nil {
		t.Fatalf("create the %s CR: %v", tag, err)
	}
	if err := h.sim.WaitFor(ctx, simulator.Has(simulator.HopCompleted, tag)); err != nil {
		t.Fatal(err)
	}
}

// noViolations fails the test if KubeVirt was driven outside its rules.
func (h *harness) noViolations(t testing.TB) {
	t.Helper()
	if v := h.sim.Violations(); len(v) > 0 {
		t.Errorf("the simulator recorded violations: %+v", v)
	}
}
