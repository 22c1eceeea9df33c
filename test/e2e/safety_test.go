package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/stack"
)

// TestARefusedHopAndDrift: a hop crossing a blocking risk from the
// repository's risks file is refused before anything is applied (the CR is
// not written, no hop starts); a registry set on the CR by hand is put back
// under spec.drift Correct and only reported under Report.
func TestARefusedHopAndDrift(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.7.4\n  drift: Correct\n", "install")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.7.4")
	before := e.kv()

	risks := "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtUpgradeRisks\nrisks:\n- id: ACME-12\n  from: {min: v1.7.0}\n  to: {min: v1.8.0}\n  severity: Blocks\n  summary: our CSI driver breaks on 1.8\n  url: https://wiki.example.com/acme-12\n"
	if _, err := e.st.Human.CommitFile("kubevirt-risks.yaml", []byte(risks), "our own risk"); err != nil {
		t.Fatal(err)
	}
	e.commit("  version: v1.8.4\n  drift: Correct\n", "upgrade into the risk")
	st := e.wait(stack.Phase(agent.PhaseRefused, ""), "Refused")
	if st.Reason != "KnownRisk" || !strings.Contains(st.Message, "ACME-12") || !strings.Contains(st.Message, "https://wiki.example.com/acme-12") {
		t.Errorf("refusal %s %q", st.Reason, st.Message)
	}
	if !slices.ContainsFunc(st.Preflight, func(c planner.Check) bool { return c.Name == "KnownRisk/ACME-12" && c.Result == planner.CheckRefuse }) {
		t.Errorf("preflight %+v", st.Preflight)
	}
	e.polls(3)
	after := e.kv()
	if n := e.st.Sim.Count(simulator.HopStarted); n != 0 || after.GetGeneration() != before.GetGeneration() {
		t.Errorf("a refused hop touched the cluster: %d hops, generation %d -> %d", n, before.GetGeneration(), after.GetGeneration())
	}

	// Correct: the hand-set registry is put back.
	e.commit("  version: v1.7.4\n  drift: Correct\n", "back to 1.7")
	e.wait(func(s agent.Status) bool { return s.Reason == "UpToDate" && s.Desired != nil && s.Applied != nil }, "UpToDate")
	e.setRegistry("mirror.example.com/kubevirt")
	e.wait(func(s agent.Status) bool {
		return s.Reason == "DriftCorrected" || s.Reason == "UpToDate" && len(e.registry()) == 0
	}, "the drift corrected")
	deadline := time.Now().Add(30 * time.Second)
	for e.registry() != "" && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if r := e.registry(); r != "" {
		t.Errorf("spec.imageRegistry %q was not put back", r)
	}

	// Report: named in the status, never written.
	e.commit("  version: v1.7.4\n  drift: Report\n", "report drift only")
	e.wait(func(s agent.Status) bool { return s.Reason == "UpToDate" && s.Desired != nil && s.Desired.Drift == "" }, "UpToDate under Report")
	e.setRegistry("mirror.example.com/kubevirt")
	st = e.wait(func(s agent.Status) bool { return s.Reason == "DriftDetected" }, "DriftDetected")
	if !strings.Contains(st.Message, `spec.imageRegistry "mirror.example.com/kubevirt" (kvgitops left unset)`) || len(st.Drift) == 0 {
		t.Errorf("drift %q %+v", st.Message, st.Drift)
	}
	e.polls(3)
	if r := e.registry(); r != "mirror.example.com/kubevirt" {
		t.Errorf("under Report the registry became %q", r)
	}
}

func (e *e2e) kv() *unstructured.Unstructured {
	e.t.Helper()
	kv, err := e.dyn().Resource(kvGVR).Namespace("kubevirt").Get(e.t.Context(), "kubevirt", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return kv
}

func (e *e2e) registry() string {
	r, _, _ := unstructured.NestedString(e.kv().Object, "spec", "imageRegistry")
	return r
}

func (e *e2e) setRegistry(r string) {
	e.t.Helper()
	patch := []byte(`{"spec":{"imageRegistry":"` + r + `"}}`)
	if _, err := e.dyn().Resource(kvGVR).Namespace("kubevirt").Patch(e.t.Context(), "kubevirt", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		e.t.Fatal(err)
	}
}
