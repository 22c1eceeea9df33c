package lane

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// TestRealOperatorLifecycle drives the built kvgitops, as the deploy/
// ServiceAccount, against KubeVirt's own virt-operator: install, the
// planner's refusal of an ImageTag hop under the buggy v1.6 operator, an
// operator-manifest hop, an ImageTag hop while the operator's fail-closed
// webhook is down, and a teardown that leaves nothing. Then the simulator
// runs the same hop and deletion, and the two are compared.
func TestRealOperatorLifecycle(t *testing.T) {
	w := setup(t)
	from, to, last := lane.tags[0], lane.tags[1], lane.tags[2]
	ctx := t.Context()
	start := time.Now()
	stage := func(name string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), name) }
	defer stage("done")

	w.commit("  version: "+from+"\n", "install")
	w.agent()
	w.succeeded(from)
	stage("installed " + from)
	kv := w.kv()
	if got := str(kv, "status", "operatorVersion"); got != from {
		t.Errorf("the real operator reports operatorVersion %q, want %s", got, from)
	}
	if !strings.Contains(strings.Join(kv.GetFinalizers(), ","), "foregroundDeleteKubeVirt") {
		t.Errorf("finalizers %v", kv.GetFinalizers())
	}

	// v1.6 writes its own install strategy whatever spec.imageTag says.
	w.commit("  version: "+to+"\n  method: ImageTag\n", "imageTag under v1.6")
	st := w.wait("Refused", time.Minute, func(s agent.Status) bool { return s.Phase == agent.PhaseRefused })
	if st.Reason != "ImageTagStrategyBug" || !strings.Contains(st.Message, "virt-operator "+from) {
		t.Errorf("refusal %s %q", st.Reason, st.Message)
	}
	if got := str(w.kv(), "status", "targetKubeVirtVersion"); got != from {
		t.Errorf("a refused plan moved the target to %s", got)
	}

	// An operator-manifest hop, recorded for the comparison.
	rec := record(w.dyn, from, to)
	w.commit("  version: "+to+"\n", "operator hop")
	w.succeeded(to)
	realHop := rec.finish()
	stage("hop to " + to)

	// An ImageTag hop while the operator, and its webhook, is down: the
	// agent retries without failing, then the hop completes (v1.7 runs the
	// target's strategy; where the target grants RBAC v1.7 lacks, the
	// agent updates the operator first).
	w.si.PauseOperator()
	w.commit("  version: "+last+"\n  method: ImageTag\n", "imageTag hop, webhook down")
	st = w.wait("the agent retrying on the webhook", 2*time.Minute, func(s agent.Status) bool {
		return s.Reason == "Retrying" && strings.Contains(s.Message, "WebhookUnavailable")
	})
	t.Logf("while the webhook is down: %s", st.Message)
	stage("webhook down, agent retrying")
	w.si.ResumeOperator()
	st = w.succeeded(last)
	stage("imageTag hop to " + last)
	if st.Observed.Mode != "ImageTag" {
		t.Errorf("observed %+v, want the CR pinned to %s", st.Observed, last)
	}

	// The one stretch with KubeVirt's common instancetypes on, as its
	// kubevirt-cr.yaml ships: the operator deploys them, and they go with
	// the rest below.
	enableInstancetypes(t, w)
	stage("common instancetypes deployed")

	// The operator's own deletion, then what is left of KubeVirt, which
	// state Absent removes.
	if err := w.dyn.Resource(kvGVR).Namespace("kubevirt").Delete(ctx, "kubevirt", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Seconds when idle; minutes on a machine busy with the other suites.
	w.eventually(6*time.Minute, "the real operator deletes KubeVirt", func() bool {
		_, err := w.dyn.Resource(kvGVR).Namespace("kubevirt").Get(ctx, "kubevirt", metav1.GetOptions{})
		return err != nil
	})
	realLeft := kubevirtObjects(ctx, w.dyn)
	stage("operator deleted KubeVirt")
	w.commit("  state: Absent\n", "remove KubeVirt")
	w.wait("KubeVirt absent", 5*time.Minute, func(s agent.Status) bool {
		return s.Phase == agent.PhaseSucceeded && s.Desired != nil && s.Desired.State == "Absent"
	})
	if left := kubevirtObjects(ctx, w.dyn); len(left) != 0 {
		t.Errorf("after the teardown: %v", left)
	}
	if n := instancetypes(w); n != 0 {
		t.Errorf("%d common instancetypes left after the teardown", n)
	}
	for _, a := range w.agents {
		a.Stop()
	}
	w.si.Stop()

	stage("absent")
	simHop, simLeft := simulate(t, from, to)
	stage("simulated")
	compare(t, "CR states of the hop "+from+" -> "+to, realHop, simHop)
	compare(t, "objects left after the operator's deletion", realLeft, simLeft)
}

// simulate runs the same hop and deletion on the simulator.
func simulate(t *testing.T, from, to string) (hop, left []string) {
	t.Helper()
	ctx := t.Context()
	env := lane.env
	sim, err := simulator.New(env.Config, simulator.Options{Catalog: lane.tags})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	defer func() { _ = simulator.Wipe(context.Background(), env.Config) }()
	apply := func(data []byte) {
		if err := testenv.Apply(ctx, env.Config, data); err != nil {
			t.Fatal(err)
		}
	}
	apply(lane.rendered[from])
	apply(releases.CRManifest(from))
	if err := sim.WaitFor(ctx, simulator.Has(simulator.HopCompleted, from)); err != nil {
		t.Fatal(err)
	}
	dyn := dynamicFor(env)
	rec := record(dyn, from, to)
	apply(lane.rendered[to])
	if err := sim.WaitFor(ctx, simulator.Has(simulator.HopCompleted, to)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the readiness lag's last state
	hop = rec.finish()
	if err := dyn.Resource(kvGVR).Namespace("kubevirt").Delete(ctx, "kubevirt", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := sim.WaitFor(ctx, simulator.Has(simulator.FinalizerRemoved, "")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	return hop, kubevirtObjects(ctx, dyn)
}

// compare fails on every difference that simulator.RealOperatorDifferences
// does not list with a reason.
func compare(t *testing.T, what string, real, sim []string) {
	t.Helper()
	for _, d := range simulator.Differ(real, sim) {
		if reason, ok := simulator.KnownDifference(d); ok {
			t.Logf("%s: known difference %s (%s)", what, d, reason)
			continue
		}
		t.Errorf("%s: the simulator differs from the real operator: %s\nreal: %q\nsimulator: %q", what, d, real, sim)
	}
}

func (w *world) kv() *unstructured.Unstructured {
	w.t.Helper()
	kv, err := w.dyn.Resource(kvGVR).Namespace("kubevirt").Get(w.t.Context(), "kubevirt", metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return kv
}

func (w *world) eventually(limit time.Duration, what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("timed out: %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func str(u *unstructured.Unstructured, path ...string) string {
	s, _, _ := unstructured.NestedString(u.Object, path...)
	return s
}
