package lane

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/simulator"
)

// TestRealOperatorLifecycle drives the built kvgitops, as the deploy/
// ServiceAccount, against KubeVirt's own virt-operator: install, the
// planner's refusal of an ImageTag hop under the buggy v1.6 operator, an
// operator-manifest hop, an ImageTag hop (the operator first: the target
// grants RBAC the running operator lacks) while the operator's fail-closed
// webhook is down, and a teardown that leaves nothing. Then the same
// commits drive the agent against the simulator, and the CR's states of
// every step, and what the operator's deletion leaves, are compared.
func TestRealOperatorLifecycle(t *testing.T) {
	var real, sim recording
	t.Run("real", func(t *testing.T) { real = lifecycle(t, setup(t, false)) })
	if t.Failed() {
		return
	}
	t.Run("simulated", func(t *testing.T) { sim = lifecycle(t, setup(t, true)) })
	if t.Failed() {
		return
	}
	for _, step := range []struct {
		name      string
		real, sim []string
	}{
		{simulator.StepInstall, real.install, sim.install},
		{simulator.StepOperatorHop, real.operatorHop, sim.operatorHop},
		{simulator.StepImageTagHop, real.imageTagHop, sim.imageTagHop},
		{simulator.StepDeletion, real.deletion, sim.deletion},
		{simulator.StepLeft, real.left, sim.left},
	} {
		simulator.Compare(t, step.name, step.real, step.sim)
	}
}

// recording is what one lifecycle run saw of KubeVirt, step by step.
type recording struct {
	install, operatorHop, imageTagHop, deletion, left []string
}

// lifecycle runs the lane's scenario in w; where w is the real operator,
// also what only it can show (its webhook down, common instancetypes).
func lifecycle(t *testing.T, w *world) recording {
	from, to, last := lane.tags[0], lane.tags[1], lane.tags[2]
	real := w.si != nil
	ctx := t.Context()
	start := time.Now()
	stage := func(name string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), name) }
	defer stage("done")
	var out recording

	rec := simulator.Record(w.dyn, "", from)
	w.commit("  version: "+from+"\n", "install")
	w.agent()
	w.succeeded(from)
	out.install = rec.FinishLogging(t.Logf)
	stage("installed " + from)
	kv := w.kv()
	if got := str(kv, "status", "operatorVersion"); got != from {
		t.Errorf("operatorVersion %q, want %s", got, from)
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

	rec = simulator.Record(w.dyn, from, to)
	w.commit("  version: "+to+"\n", "operator hop")
	w.succeeded(to)
	out.operatorHop = rec.FinishLogging(t.Logf)
	stage("hop to " + to)

	// An ImageTag hop; on the real operator while it, and its webhook, is
	// down: the agent retries without failing, then the hop completes.
	rec = simulator.Record(w.dyn, to, last)
	if real {
		w.si.PauseOperator()
	}
	w.commit("  version: "+last+"\n  method: ImageTag\n", "imageTag hop")
	if real {
		st = w.wait("the agent retrying on the webhook", 2*time.Minute, func(s agent.Status) bool {
			return s.Reason == "Retrying" && strings.Contains(s.Message, "WebhookUnavailable")
		})
		t.Logf("while the webhook is down: %s", st.Message)
		stage("webhook down, agent retrying")
		w.si.ResumeOperator()
	}
	st = w.succeeded(last)
	out.imageTagHop = rec.FinishLogging(t.Logf)
	stage("imageTag hop to " + last)
	if st.Observed.Mode != "ImageTag" {
		t.Errorf("observed %+v, want the CR pinned to %s", st.Observed, last)
	}
	// v1.8.4's component roles hold rules v1.7.0's operator lacks: the
	// apiserver refuses the old operator, and the agent applies the new
	// one first, on the simulator as on the real operator.
	if st.Plan == nil || len(st.Plan.Steps) != 1 || !st.Plan.Steps[0].OperatorFirst {
		t.Errorf("the ImageTag hop %s -> %s did not update the operator first: plan %+v", to, last, st.Plan)
	}

	// The one stretch with KubeVirt's common instancetypes on, as its
	// kubevirt-cr.yaml ships: the real operator deploys them, and they go
	// with the rest below.
	if real {
		enableInstancetypes(t, w)
		stage("common instancetypes deployed")
	}

	// The operator's own deletion, then what is left of KubeVirt, which
	// state Absent removes.
	rec = simulator.Record(w.dyn, last, last)
	if err := w.dyn.Resource(kvGVR).Namespace("kubevirt").Delete(ctx, "kubevirt", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Seconds when idle; minutes on a machine busy with the other suites.
	w.eventually(6*time.Minute, "the operator deletes KubeVirt", func() bool {
		_, err := w.dyn.Resource(kvGVR).Namespace("kubevirt").Get(ctx, "kubevirt", metav1.GetOptions{})
		return err != nil
	})
	out.deletion = rec.FinishLogging(t.Logf)
	out.left = kubevirtObjects(ctx, w.dyn)
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
	return out
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
