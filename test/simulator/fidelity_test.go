package simulator_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// vmis creates n running VMIs and returns their UIDs by name.
func (h *harness) vmis(t *testing.T, n int) map[string]types.UID {
	t.Helper()
	out := map[string]types.UID{}
	for i := range n {
		name := "vm" + string(rune('a'+i))
		uid, err := h.sim.CreateVMI(h.ctx(t), "default", name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = uid
	}
	return out
}

// TestWorkloadsMoveOnlyOnceTheHopIsDone: the updater acts only when phase
// is Deployed and the deployment ids match.
func TestWorkloadsMoveOnlyOnceTheHopIsDone(t *testing.T) {
	h := start(t)
	h.install(t, "v1.7.4", map[string]any{"workloadUpdateStrategy": map[string]any{"workloadUpdateMethods": []any{"LiveMigrate"}}})
	h.vmis(t, 1)
	h.sim.StallHop("v1.8.4")
	h.applyOperator(t, "v1.8.4")
	h.wait(t, simulator.Has(simulator.HopStarted, "v1.8.4"))
	time.Sleep(300 * time.Millisecond) // several migration delays
	if h.sim.Count(simulator.VMIMigrated) != 0 {
		t.Fatal("a VMI migrated while the hop was still in progress")
	}
	h.sim.ClearFaults()
	h.wait(t, simulator.Has(simulator.VMIMigrated, ""))
}

// TestImageTagUnderABuggyOperatorIsAMixedInstall: from v0.58.1 to v1.6.x
// the strategy Job runs the running operator's image (kubevirt#16050).
func TestImageTagUnderABuggyOperatorIsAMixedInstall(t *testing.T) {
	h := start(t)
	h.install(t, "v1.6.6", nil)
	h.patchImageTag(t, "v1.7.0")
	h.wait(t, simulator.Has(simulator.HopCompleted, "v1.7.0"))
	if v := h.sim.Violations(); len(v) != 1 || v[0].Kind != simulator.MixedInstall || !strings.Contains(v[0].Message, "v1.6.6's manifests with v1.7.0 images") {
		t.Errorf("violations %+v, want one MixedInstall", v)
	}
	dep, err := h.kube.AppsV1().Deployments("kubevirt").Get(h.ctx(t), "virt-api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := dep.Annotations[simulator.StrategyAnnotation]; got != "v1.6.6" || dep.Annotations["kubevirt.io/install-strategy-version"] != "v1.7.0" {
		t.Errorf("virt-api stamped strategy %q, install-strategy-version %q: want v1.6.6's strategy reported as v1.7.0", got, dep.Annotations["kubevirt.io/install-strategy-version"])
	}
}

// TestObservedBeforeReady: up to v1.8.x (and v1.9.0-beta.0) observed* is
// copied before the readiness check passes, with Created=True beside
// DeploymentInProgress; from v1.9.0-rc.0 it is copied after.
func TestObservedBeforeReady(t *testing.T) {
	for _, tt := range []struct {
		tag    string
		window bool
	}{{"v1.8.4", true}, {"v1.9.0-beta.0", true}, {"v1.9.0-rc.0", false}, {"v1.9.0", false}} {
		t.Run(tt.tag, func(t *testing.T) {
			h := startWith(t, simulator.Options{ReadyLag: time.Second})
			seen := false
			done := make(chan struct{})
			go func() {
				defer close(done)
				deadline := time.Now().Add(waitFor)
				for time.Now().Before(deadline) && h.sim.Count(simulator.HopCompleted) == 0 {
					kv, err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Get(t.Context(), "kubevirt", metav1.GetOptions{})
					if err == nil && str(kv, "status", "observedKubeVirtVersion") == tt.tag {
						st, reason, _, _ := condition(kv, "Available")
						created, _, _, _ := condition(kv, "Created")
						seen = seen || st == "False" && reason == "DeploymentInProgress" && created == "True"
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
			h.install(t, tt.tag, nil)
			<-done
			if seen != tt.window {
				t.Errorf("observed == %s while Available=False DeploymentInProgress and Created=True: seen %t, want %t", tt.tag, seen, tt.window)
			}
		})
	}
}

// TestDeletionCascade: from v0.50 the operator finalizes its CRDs, whose
// deletion waits for every VMI to shut down; up to v1.8.x it then sets the
// CR's finalizers to nil, v1.9 removes only its own.
func TestDeletionCascade(t *testing.T) {
	for _, tt := range []struct {
		tag         string
		foreignKept bool
	}{{"v1.8.4", false}, {"v1.9.0", true}} {
		t.Run(tt.tag, func(t *testing.T) {
			h := start(t)
			h.install(t, tt.tag, nil)
			h.vmis(t, 2)
			kv := h.kv(t)
			kv.SetFinalizers(append(kv.GetFinalizers(), "example.com/keep"))
			if _, err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Update(h.ctx(t), kv, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Delete(h.ctx(t), "kubevirt", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, func() bool {
				crd, err := h.dyn.Resource(crdGVR).Get(h.ctx(t), "virtualmachineinstances.kubevirt.io", metav1.GetOptions{})
				return err == nil && slices.Contains(crd.GetFinalizers(), simulator.CRDFinalizer) || h.sim.Count(simulator.CRDsDeleted) > 0
			}, "the operator's finalizer on the VMI CRD")
			h.wait(t, simulator.Has(simulator.FinalizerRemoved, ""))
			if h.exists(t, crdGVR, "", "virtualmachineinstances.kubevirt.io") {
				t.Error("VMI CRD left behind")
			}
			if got := h.exists(t, kvGVR, "kubevirt", "kubevirt"); got != tt.foreignKept {
				t.Errorf("CR still there: %t, want %t (the foreign finalizer kept by %s)", got, tt.foreignKept, tt.tag)
			}
		})
	}
}

// TestASecondCRFreezesEveryCR: with more than one KubeVirt CR in the
// cluster the operator ignores all of them (docs/kubevirt.md, "The KubeVirt CR").
func TestASecondCRFreezesEveryCR(t *testing.T) {
	h := start(t)
	h.applyOperator(t, "v1.8.4")
	stray, err := testenv.Decode(releases.CRManifest("v1.8.4"))
	if err != nil {
		t.Fatal(err)
	}
	stray[0].SetNamespace("default")
	gvr := kvGVR
	gvr.Version = "v1"
	eventually(t, func() bool {
		_, err := h.dyn.Resource(gvr).Namespace("default").Create(h.ctx(t), stray[0], metav1.CreateOptions{})
		return err == nil
	}, "create a stray CR in default")
	main, _ := testenv.Decode(releases.CRManifest("v1.8.4"))
	if _, err := h.dyn.Resource(gvr).Namespace("kubevirt").Create(h.ctx(t), main[0], metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Each CR is marked as it is seen (the events can count one CR twice
	// before the other's status is written): wait for both statuses.
	ignored := func(ns string) (string, bool) {
		kv, err := h.dyn.Resource(kvGVR).Namespace(ns).Get(h.ctx(t), "kubevirt", metav1.GetOptions{})
		if err != nil {
			return err.Error(), false
		}
		st, reason, _, _ := condition(kv, "Synchronized")
		return fmt.Sprintf("Synchronized %s/%s finalizers %v", st, reason, kv.GetFinalizers()),
			st == "False" && reason == "ExistingDeployment" && len(kv.GetFinalizers()) == 0
	}
	eventually(t, func() bool {
		_, a := ignored("default")
		_, b := ignored("kubevirt")
		return a && b
	}, "both CRs marked ExistingDeployment")
	for _, ns := range []string{"default", "kubevirt"} {
		if got, ok := ignored(ns); !ok {
			t.Errorf("%s: %s, want an ignored CR (Synchronized False/ExistingDeployment, no finalizers)", ns, got)
		}
	}
	if h.sim.Count(simulator.InstallStarted) != 0 {
		t.Error("an install started with two CRs in the cluster")
	}
}
