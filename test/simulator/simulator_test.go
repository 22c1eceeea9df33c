package simulator_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"

	"github.com/kvgitops/kvgitops/test/simulator"
)

func TestFreshInstallAcrossEras(t *testing.T) {
	tests := []struct {
		tag             string
		finalizer       string
		operatorVersion string
		conditions      []string // condition types in order
		apiVersions     string   // annotation kubevirt.io/latest-observed-api-version
	}{
		{"v0.17.0", "foregroundDeleteKubeVirt", "v0.0.0-master+$Format:%h$", []string{"Created", "Ready"}, ""},
		{"v0.26.0", "foregroundDeleteKubeVirt", "v0.0.0-master+$Format:%h$", []string{"Available", "Progressing", "Degraded", "Created"}, "v1alpha3"},
		{"v0.58.2", "foregroundDeleteKubeVirt", "v0.0.0-master+$Format:%h$", []string{"Available", "Progressing", "Degraded", "Created"}, "v1"},
		{"v1.8.4", "foregroundDeleteKubeVirt", "v1.8.4", []string{"Available", "Progressing", "Degraded", "Created"}, "v1"},
		{"v1.9.0", "kubevirt.io/foregroundDeleteKubeVirt", "v1.9.0", []string{"Available", "Progressing", "Degraded", "Created"}, "v1"},
	}
	for _, tt := range tests {
		t.Run(tt.tag, func(t *testing.T) {
			h := start(t)
			h.install(t, tt.tag, nil)
			kv := h.kv(t)
			for field, want := range map[string]string{
				"phase": "Deployed", "observedKubeVirtVersion": tt.tag, "targetKubeVirtVersion": tt.tag, "operatorVersion": tt.operatorVersion,
			} {
				if got := str(kv, "status", field); got != want {
					t.Errorf("status.%s = %q, want %q", field, got, want)
				}
			}
			var types []string
			for _, typ := range []string{"Available", "Progressing", "Degraded", "Created", "Ready", "Synchronized", "Updating"} {
				if _, _, _, ok := condition(kv, typ); ok {
					types = append(types, typ)
				}
			}
			slices.Sort(types)
			want := slices.Sorted(slices.Values(tt.conditions))
			if diff := cmp.Diff(want, types); diff != "" {
				t.Errorf("condition types (-want +got):\n%s", diff)
			}
			if st, reason, _, _ := condition(kv, tt.conditions[0]); st != "True" || reason == "" {
				t.Errorf("%s = %s/%s, want True", tt.conditions[0], st, reason)
			}
			if got := kv.GetFinalizers(); !slices.Equal(got, []string{tt.finalizer}) {
				t.Errorf("finalizers %v, want [%s]", got, tt.finalizer)
			}
			if got := kv.GetAnnotations()["kubevirt.io/latest-observed-api-version"]; got != tt.apiVersions {
				t.Errorf("latest-observed-api-version %q, want %q", got, tt.apiVersions)
			}
			if !h.exists(t, apiSvc, "", "v1alpha3.subresources.kubevirt.io") || !h.exists(t, vwcGVR, "", "virt-api-validator") {
				t.Error("APIService or virt-api webhook missing after install")
			}
		})
	}
}

func TestStatusAfterInstall(t *testing.T) {
	h := start(t)
	h.install(t, "v1.8.4", nil)
	kv := h.kv(t)
	if og, _, _ := unstructuredInt(kv, "status", "observedGeneration"); og != kv.GetGeneration() {
		t.Errorf("observedGeneration %d, want generation %d", og, kv.GetGeneration())
	}
	if str(kv, "status", "observedDeploymentID") == "" || str(kv, "status", "observedDeploymentID") != str(kv, "status", "targetDeploymentID") {
		t.Errorf("deployment ids observed %q target %q, want equal and set", str(kv, "status", "observedDeploymentID"), str(kv, "status", "targetDeploymentID"))
	}
	if got := kinds(h.sim.Transitions()); !slices.Equal(got, []simulator.Kind{simulator.OperatorRolloutStarted, simulator.OperatorReady, simulator.InstallStarted, simulator.FinalizerAdded, simulator.HopCompleted}) {
		t.Errorf("transitions %v", got)
	}
	// A leftover-style APIService without endpoints makes discovery partial.
	_, _, err := discovery.NewDiscoveryClientForConfigOrDie(h.cfg).ServerGroupsAndResources()
	var gdf *discovery.ErrGroupDiscoveryFailed
	if !errors.As(err, &gdf) || !strings.Contains(err.Error(), "subresources.kubevirt.io") {
		t.Errorf("discovery error %v, want a partial failure for subresources.kubevirt.io", err)
	}
}

func TestLockedUpgradeByApplyingTheNextOperator(t *testing.T) {
	h := start(t)
	h.install(t, "v1.7.4", nil)
	h.sim.StallHop("v1.8.4")
	h.applyOperator(t, "v1.8.4")
	h.wait(t, simulator.Has(simulator.HopStarted, "v1.8.4"))
	// Mid-update: phase stays Deployed; Available, Progressing and Degraded are all True.
	deadline := time.Now().Add(waitFor)
	for {
		kv := h.kv(t)
		_, reason, msg, _ := condition(kv, "Progressing")
		if reason == "UpdateInProgress" {
			if str(kv, "status", "phase") != "Deployed" || str(kv, "status", "observedKubeVirtVersion") != "v1.7.4" || str(kv, "status", "targetKubeVirtVersion") != "v1.8.4" {
				t.Errorf("mid-update status %v", kv.Object["status"])
			}
			for _, typ := range []string{"Available", "Progressing", "Degraded"} {
				if st, _, _, _ := condition(kv, typ); st != "True" {
					t.Errorf("mid-update %s = %s, want True", typ, st)
				}
			}
			if _, _, _, ok := condition(kv, "Created"); ok {
				t.Error("Created should be removed during an update")
			}
			if !strings.Contains(msg, "Transitioning from previous version v1.7.4 with registry quay.io/kubevirt to target version v1.8.4") {
				t.Errorf("update message %q", msg)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saw UpdateInProgress: %v", kv.Object["status"])
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.sim.ClearFaults()
	h.wait(t, simulator.Has(simulator.HopCompleted, "v1.8.4"))
	if got := h.sim.CompletedHops(); !slices.Equal(got, []simulator.Hop{{To: "v1.7.4"}, {From: "v1.7.4", To: "v1.8.4"}}) {
		t.Errorf("hops %v", got)
	}
}

func TestImageTagUpgradeKeepsTheOperator(t *testing.T) {
	h := start(t)
	h.install(t, "v1.8.3", nil)
	h.patchImageTag(t, "v1.8.4")
	h.wait(t, simulator.Has(simulator.HopCompleted, "v1.8.4"))
	kv := h.kv(t)
	if str(kv, "status", "observedKubeVirtVersion") != "v1.8.4" || str(kv, "status", "operatorVersion") != "v1.8.3" {
		t.Errorf("after an ImageTag hop: observed %s, operator %s; want v1.8.4 under operator v1.8.3",
			str(kv, "status", "observedKubeVirtVersion"), str(kv, "status", "operatorVersion"))
	}
	h.noViolations(t)
}

// TestRBACFailureAndRecoveryByUpdatingTheOperatorFirst: v1.8 grants rules
// v1.7's operator lacks; a v1.7.4 operator runs the target's strategy, so
// the apiserver's escalation check refuses it; the new operator recovers.
func TestRBACFailureAndRecoveryByUpdatingTheOperatorFirst(t *testing.T) {
	h := start(t)
	h.install(t, "v1.7.4", nil)
	h.patchImageTag(t, "v1.8.4")
	h.wait(t, simulator.Has(simulator.RBACForbidden, "v1.8.4"))
	kv := h.kv(t)
	st, reason, msg, _ := condition(kv, "Degraded")
	if st != "True" || reason != "DeploymentFailed" ||
		!strings.Contains(msg, `An error occurred during deployment: unable to update ClusterRole kubevirt-controller`) ||
		!strings.Contains(msg, `user "system:serviceaccount:kubevirt:kubevirt-operator"`) ||
		!strings.Contains(msg, "attempting to grant RBAC permissions not currently held") {
		t.Errorf("Degraded = %s/%s %q, want the real RBAC escalation failure", st, reason, msg)
	}
	if st, reason, _, _ := condition(kv, "Synchronized"); st != "False" || reason != "DeploymentFailed" {
		t.Errorf("Synchronized = %s/%s, want False/DeploymentFailed", st, reason)
	}
	if str(kv, "status", "observedKubeVirtVersion") != "v1.7.4" {
		t.Errorf("observed moved during a failed hop: %s", str(kv, "status", "observedKubeVirtVersion"))
	}
	// The old operator retries after its backoff (5s, then longer); the new
	// operator starts with a fresh queue and finishes the hop.
	h.applyOperator(t, "v1.8.4")
	h.wait(t, simulator.Has(simulator.HopCompleted, "v1.8.4"))
	h.wait(t, simulator.Has(simulator.OperatorReady, "v1.8.4"))
	if h.sim.Count(simulator.RBACGranted) != 1 || h.sim.Count(simulator.RBACForbidden) != 1 {
		t.Errorf("transitions %v, want one RBACForbidden (the backoff holds the retry) and one RBACGranted", kinds(h.sim.Transitions()))
	}
	h.noViolations(t)
}

// TestTheV19OperatorReplacesTheBareFinalizer (docs/kubevirt.md, "Deletion").
func TestTheV19OperatorReplacesTheBareFinalizer(t *testing.T) {
	h := start(t)
	h.install(t, "v1.8.4", nil)
	h.applyOperator(t, "v1.9.0")
	h.wait(t, simulator.Has(simulator.HopCompleted, "v1.9.0"))
	eventually(t, func() bool {
		return slices.Equal(h.kv(t).GetFinalizers(), []string{"kubevirt.io/foregroundDeleteKubeVirt"})
	}, "the v1.9 operator replaces the bare finalizer")
	h.noViolations(t)
}

// TestExecutesSkippedMinorAndDowngradeAndRecordsThem: the real operator
// refuses none of these (docs/kubevirt.md, "Supported update path"); the simulator executes them and
// records a violation, so a test of the agent can assert there is none.
func TestExecutesSkippedMinorAndDowngradeAndRecordsThem(t *testing.T) {
	for _, tt := range []struct{ from, to, says string }{
		{"v1.6.6", "v1.8.4", "skips a minor release"},
		{"v1.8.4", "v1.8.3", "downgrade from v1.8.4 to v1.8.3"},
		{"v1.6.2", "v1.7.0", "does not start from the latest patch"},
	} {
		t.Run(tt.from+"->"+tt.to, func(t *testing.T) {
			h := start(t)
			h.install(t, tt.from, nil)
			h.applyOperator(t, tt.to)
			h.wait(t, simulator.Has(simulator.HopCompleted, tt.to))
			v := h.sim.Violations()
			if len(v) == 0 || v[0].Kind != simulator.PathViolation || !strings.Contains(v[0].Message, tt.says) {
				t.Errorf("violations %+v, want a PathViolation saying %q", v, tt.says)
			}
			if st, reason, _, _ := condition(h.kv(t), "Degraded"); st != "False" || reason != "AllComponentsReady" {
				t.Errorf("Degraded = %s/%s, want the hop to complete as the real operator would", st, reason)
			}
		})
	}
}

func TestDeletionRemovesEverythingWithTheVersionFinalizer(t *testing.T) {
	h := start(t)
	h.install(t, "v1.9.0", nil)
	if err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Delete(h.ctx(t), "kubevirt", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.wait(t, simulator.Has(simulator.FinalizerRemoved, ""))
	waitGone(t, h, "kubevirt", "kubevirt")
	for _, n := range []struct{ name string }{{"v1.subresources.kubevirt.io"}, {"v1alpha3.subresources.kubevirt.io"}} {
		if h.exists(t, apiSvc, "", n.name) {
			t.Errorf("APIService %s left behind by v1.9.0", n.name)
		}
	}
	for _, n := range []string{"virt-api-validator", "virt-operator-validator"} {
		if h.exists(t, vwcGVR, "", n) {
			t.Errorf("webhook %s left behind by v1.9.0", n)
		}
	}
	if h.exists(t, crdGVR, "", "virtualmachineinstances.kubevirt.io") {
		t.Error("VMI CRD left behind")
	}
}

func TestLeftoversAfterDeletion(t *testing.T) { // old releases, on a cluster that installed them before Kubernetes 1.22
	for _, tt := range []struct {
		tag       string
		leftovers bool
	}{{"v0.26.0", true}, {"v0.27.0", false}} {
		t.Run(tt.tag, func(t *testing.T) {
			h := start(t)
			h.install(t, tt.tag, nil)
			if err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Delete(h.ctx(t), "kubevirt", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			h.wait(t, simulator.Has(simulator.FinalizerRemoved, ""))
			got := []bool{
				h.exists(t, apiSvc, "", "v1alpha3.subresources.kubevirt.io"),
				h.exists(t, vwcGVR, "", "virt-api-validator"),
				h.exists(t, mwcGVR, "", "virt-api-mutator"),
			}
			for i, g := range got {
				if g != tt.leftovers {
					t.Errorf("%s: leftover %d present=%t, want %t", tt.tag, i, g, tt.leftovers)
				}
			}
			if h.exists(t, vwcGVR, "", "virt-operator-validator") {
				t.Errorf("%s: virt-operator-validator is operator-managed and must be deleted", tt.tag)
			}
			if tt.leftovers != (h.sim.Count(simulator.LeftoversKept) == 1) {
				t.Errorf("LeftoversKept recorded %d times", h.sim.Count(simulator.LeftoversKept))
			}
		})
	}
}

func TestStuckTerminatingWithoutOperator(t *testing.T) {
	h := start(t)
	h.install(t, "v1.1.0", nil)
	h.sim.SlowDeletion(time.Hour)
	if err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Delete(h.ctx(t), "kubevirt", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.wait(t, simulator.Has(simulator.DeletionStarted, ""))
	if err := h.kube.AppsV1().Deployments("kubevirt").Delete(h.ctx(t), "virt-operator", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.wait(t, simulator.Has(simulator.OperatorGone, ""))
	h.sim.SlowDeletion(0) // the operator is gone: nothing will finish the deletion
	patch := []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`)
	_, err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Patch(h.ctx(t), "kubevirt", types.JSONPatchType, patch, metav1.PatchOptions{})
	if err == nil || !strings.Contains(err.Error(), `failed calling webhook "kubevirt-update-validator.kubevirt.io"`) {
		t.Fatalf("finalizer patch: %v, want the fail-closed update webhook", err)
	}
	kv := h.kv(t)
	if kv.GetDeletionTimestamp() == nil || len(kv.GetFinalizers()) == 0 {
		t.Fatalf("CR should be stuck Terminating with its finalizer: %v %v", kv.GetDeletionTimestamp(), kv.GetFinalizers())
	}
	if err := h.dyn.Resource(vwcGVR).Delete(h.ctx(t), "virt-operator-validator", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The apiserver drops a deleted webhook from its admission cache
	// asynchronously: the patch may still meet it for a moment. Only that
	// failure is retried, as the product's remediation does.
	eventually(t, func() bool {
		_, err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Patch(h.ctx(t), "kubevirt", types.JSONPatchType, patch, metav1.PatchOptions{})
		if err != nil && !strings.Contains(err.Error(), "failed calling webhook") {
			t.Fatalf("finalizer patch after deleting the validator: %v", err)
		}
		return err == nil
	}, "the finalizer patch once the webhook is gone from the apiserver's cache")
	waitGone(t, h, "kubevirt", "kubevirt")
}

func TestBlockUninstallIfWorkloadsExist(t *testing.T) {
	h := start(t)
	h.install(t, "v1.8.4", map[string]any{"uninstallStrategy": "BlockUninstallIfWorkloadsExist"})
	// Changing uninstallStrategy changes the deployment id: the install settles first.
	if _, err := h.sim.CreateVMI(h.ctx(t), "default", "vm1"); err != nil {
		t.Fatal(err)
	}
	err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Delete(h.ctx(t), "kubevirt", metav1.DeleteOptions{})
	want := `admission webhook "kubevirt-validator.kubevirt.io" denied the request: Rejecting the uninstall request, since there are still Virtual Machine Instances present.`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("delete with a VMI present: %v, want %q", err, want)
	}
	if h.kv(t).GetDeletionTimestamp() != nil {
		t.Error("a rejected delete must not mark the CR for deletion")
	}
}

func TestFaults(t *testing.T) {
	t.Run("crash-looping operator never rolls out and the old one keeps acting", func(t *testing.T) {
		h := start(t)
		h.install(t, "v1.8.4", nil)
		h.sim.CrashLoopOperator("v1.9.0")
		h.applyOperator(t, "v1.9.0")
		h.wait(t, simulator.Has(simulator.OperatorCrashLooping, "v1.9.0"))
		h.noViolations(t)
		dep, err := h.kube.AppsV1().Deployments("kubevirt").Get(h.ctx(t), "virt-operator", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var reason string
		for _, c := range dep.Status.Conditions {
			if c.Type == "Progressing" {
				reason = c.Reason
			}
		}
		if reason != "ProgressDeadlineExceeded" || dep.Status.UnavailableReplicas != 1 {
			t.Errorf("deployment status %+v, want ProgressDeadlineExceeded with one unavailable replica", dep.Status)
		}
		if h.sim.Count(simulator.HopStarted) != 0 {
			t.Error("a crash-looping operator must not start a hop")
		}
	})
	t.Run("a disrupted VMI gets a new UID during the hop", func(t *testing.T) {
		h := start(t)
		h.install(t, "v1.7.4", nil)
		uid, err := h.sim.CreateVMI(h.ctx(t), "default", "vm1")
		if err != nil {
			t.Fatal(err)
		}
		h.sim.DisruptVMIDuringNextHop("default", "vm1")
		h.applyOperator(t, "v1.8.4")
		h.wait(t, simulator.Has(simulator.HopCompleted, "v1.8.4"))
		vmi, err := h.dyn.Resource(vmiGVR).Namespace("default").Get(h.ctx(t), "vm1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if vmi.GetUID() == uid || h.sim.Count(simulator.VMIDisrupted) != 1 {
			t.Errorf("VMI UID %s (was %s), disruptions %d", vmi.GetUID(), uid, h.sim.Count(simulator.VMIDisrupted))
		}
	})
	t.Run("a slow hop takes longer", func(t *testing.T) {
		h := start(t)
		h.install(t, "v1.7.4", nil)
		h.sim.SlowHops(400 * time.Millisecond)
		h.applyOperator(t, "v1.8.4")
		h.wait(t, simulator.Has(simulator.HopCompleted, "v1.8.4"))
		var started, done time.Time
		for _, tr := range h.sim.Transitions() {
			switch {
			case tr.Kind == simulator.HopStarted:
				started = tr.At
			case tr.Kind == simulator.HopCompleted && tr.To == "v1.8.4":
				done = tr.At
			}
		}
		if d := done.Sub(started); d < 400*time.Millisecond {
			t.Errorf("slow hop took %s, want at least the injected 400ms", d)
		}
	})
}

func waitGone(t *testing.T, h *harness, ns, name string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for h.exists(t, kvGVR, ns, name) {
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s still exists", ns, name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTheFirstPassDropsEmptyLists: as the real operator's typed update of
// the CR (found on the real node), the first pass removes the spec's empty
// lists — a new generation — and keeps the others.
func TestTheFirstPassDropsEmptyLists(t *testing.T) {
	h := start(t)
	h.install(t, "v1.8.4", map[string]any{
		"workloadUpdateStrategy": map[string]any{"workloadUpdateMethods": []any{}},
		"configuration":          map[string]any{"developerConfiguration": map[string]any{"featureGates": []any{"Snapshot"}}},
	})
	kv := h.kv(t)
	if _, found, _ := unstructured.NestedSlice(kv.Object, "spec", "workloadUpdateStrategy", "workloadUpdateMethods"); found {
		t.Error("the empty workloadUpdateMethods is still in the spec")
	}
	if gates, _, _ := unstructured.NestedStringSlice(kv.Object, "spec", "configuration", "developerConfiguration", "featureGates"); !slices.Equal(gates, []string{"Snapshot"}) {
		t.Errorf("featureGates %v, want [Snapshot]", gates)
	}
	if kv.GetGeneration() != 2 {
		t.Errorf("generation %d, want 2 (the create, the operator's update)", kv.GetGeneration())
	}
}
