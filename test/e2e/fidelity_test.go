package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/realmanifests"
	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/stack"
)

// TestHopsOnGenuineManifests: the agent installs and upgrades with the
// genuine kubevirt-operator.yaml release assets, and what it applied is
// what the release holds.
func TestHopsOnGenuineManifests(t *testing.T) {
	realmanifests.Require(t)
	for _, hop := range [][2]string{{"v0.48.1", "v0.49.0"}, {"v1.3.1", "v1.4.0"}} {
		t.Run(hop[0]+"->"+hop[1], func(t *testing.T) {
			e := setup(t, stack.Options{})
			e.commit("  version: "+hop[0]+"\n", "install")
			e.agent(stack.AgentOptions{})
			e.succeeded(hop[0])
			e.appliedEqualsManifest(releases.OperatorManifest(hop[0]))
			e.commit("  version: "+hop[1]+"\n", "upgrade")
			e.succeeded(hop[1])
			e.appliedEqualsManifest(releases.OperatorManifest(hop[1]))
			if got, want := e.st.Sim.CompletedHops(), hops(hop[0], hop[1]); !slices.Equal(got, want) {
				t.Errorf("hops %v, want %v", got, want)
			}
		})
	}
}

// TestWorkloadsReachEachHopsLauncherBeforeTheNext: with LiveMigrate on the
// CR every VMI is on a hop's virt-launcher before the next hop starts, and
// the status shows the count while it waits.
func TestWorkloadsReachEachHopsLauncherBeforeTheNext(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.6.6\n", "install")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.6.6")
	patch := []byte(`{"spec":{"workloadUpdateStrategy":{"workloadUpdateMethods":["LiveMigrate"]}}}`)
	if _, err := e.dyn().Resource(kvGVR).Namespace("kubevirt").Patch(e.t.Context(), "kubevirt", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"vma", "vmb"} {
		if _, err := e.st.Sim.CreateVMI(e.t.Context(), "default", n); err != nil {
			t.Fatal(err)
		}
	}
	e.st.Sim.SlowMigrations(2 * time.Second)
	e.commit("  version: v1.8.4\n", "two hops")
	waiting := e.wait(func(s agent.Status) bool {
		return s.Reason == "WaitingForWorkloads" && strings.Contains(s.Message, "waiting for VMIs to move to the v1.7.4 virt-launcher")
	}, "the outdated VMIs in the status")
	if waiting.Plan == nil || waiting.Plan.Steps[1].State != agent.StepPending || waiting.Workloads == nil || waiting.Workloads.Outdated.Count+waiting.Workloads.Moving.Count != 2 {
		t.Errorf("plan %+v workloads %+v: want the count in the status and the second hop pending", waiting.Plan, waiting.Workloads)
	}
	e.st.Sim.SlowMigrations(0)
	st := e.succeeded("v1.8.4")
	migrated := map[string][]time.Time{}
	var second time.Time
	for _, tr := range e.st.Sim.Transitions() {
		switch {
		case tr.Kind == simulator.VMIMigrated:
			migrated[tr.To] = append(migrated[tr.To], tr.At)
		case tr.Kind == simulator.HopStarted && tr.To == "v1.8.4":
			second = tr.At
		}
	}
	first := migrated["quay.io/kubevirt/virt-launcher:v1.7.4"]
	if len(first) != 2 || first[1].After(second) {
		t.Errorf("migrations to v1.7.4 at %v, second hop at %v: every VMI must move before the next hop", first, second)
	}
	if st.Workloads == nil || st.Workloads.Outdated.Count != 0 || st.Workloads.Disrupted.Count != 0 || st.Workloads.Moved != 2 {
		t.Errorf("workloads %+v, want none outdated or disrupted", st.Workloads)
	}
}

// TestImageTagUnderABuggyOperator: an explicit ImageTag hop under v1.6.6
// is refused, naming the operator and the bug, and nothing is touched;
// Auto unpins instead and installs no mixed release.
func TestImageTagUnderABuggyOperator(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.6.6\n  method: ImageTag\n", "install pinned")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.6.6")
	before := len(e.st.Sim.Transitions())
	e.commit("  version: v1.7.4\n  method: ImageTag\n", "imageTag hop")
	st := e.wait(stack.Phase(agent.PhaseRefused, "v1.6.6"), "Refused")
	if st.Reason != "ImageTagStrategyBug" || !strings.Contains(st.Message, "virt-operator v1.6.6") || !strings.Contains(st.Message, "kubevirt#16050") {
		t.Errorf("refusal %s %q", st.Reason, st.Message)
	}
	if n := len(e.st.Sim.Transitions()); n != before {
		t.Errorf("a refused plan changed the cluster: %v", e.st.Sim.Transitions()[before:])
	}
	// v1.7.4's operator is fixed: Auto applies it and then moves the tag,
	// with no mixed install (the cleanup asserts no violation).
	e.commit("  version: v1.7.4\n", "let kvgitops choose")
	st = e.succeeded("v1.7.4")
	if st.Observed.Mode != "ImageTag" || len(st.History) == 0 || st.History[0].Result != "Succeeded" {
		t.Errorf("observed %+v history %+v", st.Observed, st.History)
	}
}

// TestASecondKubeVirtCRIsRefused names every CR and applies nothing.
func TestASecondKubeVirtCRIsRefused(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.0.0\n", "install") // v1.0 has no create webhook for a second CR
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.0.0")
	kv, err := e.dyn().Resource(kvGVR).Namespace("kubevirt").Get(e.t.Context(), "kubevirt", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kv.SetNamespace("default")
	kv.SetResourceVersion("")
	kv.SetUID("")
	kv.SetFinalizers(nil)
	delete(kv.Object, "status")
	if _, err := e.dyn().Resource(kvGVR).Namespace("default").Create(e.t.Context(), kv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.commit("  version: v1.0.1\n", "upgrade")
	st := e.wait(stack.Phase(agent.PhaseRefused, ""), "Refused")
	if st.Reason != "MultipleKubeVirts" || !strings.Contains(st.Message, `"default/kubevirt", "kubevirt/kubevirt"`) {
		t.Errorf("refusal %s %q", st.Reason, st.Message)
	}
	if e.st.Sim.Count(simulator.HopStarted) != 0 {
		t.Error("a hop started with two KubeVirt CRs")
	}
}

// TestKubeVirtManagedByFluxIsLeftAlone: once Flux tracks the KubeVirt CR
// kvgitops installed, the agent refuses to upgrade it and to remove it,
// naming Flux and what to do, and changes nothing.
func TestKubeVirtManagedByFluxIsLeftAlone(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.0.0\n", "install")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.0.0")
	patch := []byte(`{"metadata":{"labels":{"kustomize.toolkit.fluxcd.io/name":"kubevirt","kustomize.toolkit.fluxcd.io/namespace":"flux-system"}}}`)
	if _, err := e.dyn().Resource(kvGVR).Namespace("kubevirt").Patch(e.t.Context(), "kubevirt", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ spec, state, version string }{{"  version: v1.0.1\n", "Present", "v1.0.1"}, {"  state: Absent\n", "Absent", ""}} {
		spec := want.spec
		e.commit(spec, spec)
		st := e.wait(func(s agent.Status) bool {
			return s.Phase == agent.PhaseRefused && s.Desired != nil && s.Desired.State == want.state && s.Desired.Version == want.version
		}, "Refused")
		if st.Reason != "ManagedElsewhere" || !strings.Contains(st.Message, "Flux manages KubeVirt") ||
			!strings.Contains(st.Message, `label kustomize.toolkit.fluxcd.io/name="kubevirt"`) {
			t.Errorf("%s: refusal %s %q", spec, st.Reason, st.Message)
		}
	}
	if n := e.st.Sim.Count(simulator.HopStarted); n != 0 {
		t.Errorf("%d hops started under Flux", n)
	}
	if _, err := e.dyn().Resource(kvGVR).Namespace("kubevirt").Get(e.t.Context(), "kubevirt", metav1.GetOptions{}); err != nil {
		t.Errorf("the KubeVirt CR Flux manages: %v", err)
	}
}

// TestAbsentMeansAbsent: the operator deleted by hand, the CR stuck
// Terminating, then state Absent with the opt-in: success is reported only
// once nothing of KubeVirt is left (its namespace, its CRDs, its
// APIServices), and the finalizer patch survives the webhook's removal
// still settling in the apiserver.
func TestAbsentMeansAbsent(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.8.4\n", "install")
	a := e.agent(stack.AgentOptions{})
	e.succeeded("v1.8.4")
	a.Stop()
	ctx := e.t.Context()
	// The CR is deleted, then the operator is deleted by hand before it
	// finishes: the CR stays Terminating.
	e.st.Sim.SlowDeletion(time.Hour)
	if err := e.dyn().Resource(kvGVR).Namespace("kubevirt").Delete(ctx, "kubevirt", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Sim.WaitFor(ctx, simulator.Has(simulator.DeletionStarted, "")); err != nil {
		t.Fatal(err)
	}
	if err := e.dyn().Resource(deploymentGVR).Namespace("kubevirt").Delete(ctx, "virt-operator", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Sim.WaitFor(ctx, simulator.Has(simulator.OperatorGone, "")); err != nil {
		t.Fatal(err)
	}
	e.commit("  state: Absent\n  teardown:\n    removeStuckFinalizers: true\n", "remove KubeVirt")
	teardown := e.agent(stack.AgentOptions{Name: "teardown"})
	st := e.wait(func(s agent.Status) bool {
		return s.Phase == agent.PhaseSucceeded && s.Desired != nil && s.Desired.State == "Absent"
	}, "KubeVirt absent")
	for _, o := range []struct {
		what string
		ok   bool
	}{
		{"namespace kubevirt", e.present(nsGVR, "", "kubevirt")},
		{"CRD kubevirts.kubevirt.io", e.present(crdGVR, "", "kubevirts.kubevirt.io")},
		{"CRD virtualmachines.kubevirt.io", e.present(crdGVR, "", "virtualmachines.kubevirt.io")},
		{"APIService v1.subresources.kubevirt.io", e.present(apiServiceGVR, "", "v1.subresources.kubevirt.io")},
		{"ValidatingWebhookConfiguration virt-operator-validator", e.present(vwcGVR, "", "virt-operator-validator")},
	} {
		if o.ok {
			t.Errorf("%s is still there after %q", o.what, st.Message)
		}
	}
	var steps []string
	for _, l := range teardown.Lines() {
		if l.Msg() == "Step succeeded" {
			steps = append(steps, l.Str("type"))
		}
	}
	if !slices.Contains(steps, "RemoveStuckFinalizers") || !slices.Contains(steps, "DeleteOperator") {
		t.Errorf("steps run %v: want the finalizers removed and the rest deleted", steps)
	}
}

// TestNoStatusCommitsWhileBroken: a steady state, broken or healthy, makes
// no commit, however many polls pass and whatever the agent committed
// before.
func TestNoStatusCommitsWhileBroken(t *testing.T) {
	for _, tt := range []struct {
		name   string
		setup  func(e *e2e)
		reason string
	}{
		{"invalid", func(e *e2e) { e.commit("  version: 1.10\n", "a typo") }, "InvalidDesiredState"},
		{"missing", func(e *e2e) {
			if _, err := e.st.Human.CommitFile("README.md", []byte("no desired file yet\n"), "readme"); err != nil {
				e.t.Fatal(err)
			}
		}, "DesiredFileMissing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, stack.Options{})
			tt.setup(e)
			e.agent(stack.AgentOptions{})
			e.wait(func(s agent.Status) bool { return s.Reason == tt.reason }, tt.reason)
			e.settleAndCountCommits(8)
		})
	}
	t.Run("signature", func(t *testing.T) {
		e := setup(t, stack.Options{})
		keys := e.sshSigningKey()
		e.commit("  version: v1.8.4\n", "unsigned")
		e.agent(stack.AgentOptions{Extra: []string{"--verify-ssh-keys", keys}})
		e.wait(func(s agent.Status) bool { return s.Reason == "SignatureInvalid" }, "SignatureInvalid")
		e.settleAndCountCommits(8)
	})
}

// TestClusterUnreachableIsUnknown: the agent cannot see the cluster; the
// status says so (phase Unknown), it does not claim progress.
func TestClusterUnreachableIsUnknown(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.8.4\n", "install")
	e.agent(stack.AgentOptions{Kubeconfig: e.unreachableKubeconfig()})
	st := e.wait(func(s agent.Status) bool { return s.Reason == "ClusterUnavailable" }, "ClusterUnavailable")
	ready := ""
	for _, c := range st.Conditions {
		if c.Type == "Ready" {
			ready = c.Status
		}
	}
	if st.Phase != agent.PhaseUnknown || ready != "Unknown" {
		t.Errorf("phase %s, Ready %s: want Unknown for a cluster the agent cannot see", st.Phase, ready)
	}
}
