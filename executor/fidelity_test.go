package executor_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/release"
	"github.com/kvgitops/kvgitops/test/simulator"
)

// runWith runs a step with options, collecting its progress messages.
func (h *harness) runWith(t testing.TB, step planner.Step, o executor.StepOptions) (executor.StepResult, []string, error) {
	t.Helper()
	var mu sync.Mutex
	var said []string
	o.Progress = func(m string) { mu.Lock(); said = append(said, m); mu.Unlock() }
	if o.Deadline.IsZero() {
		o.Deadline = time.Now().Add(time.Minute)
	}
	res, err := h.exec.Run(context.Background(), step, o)
	mu.Lock()
	defer mu.Unlock()
	return res, slices.Clone(said), err
}

func saidAny(said []string, want string) bool {
	return slices.ContainsFunc(said, func(s string) bool { return strings.Contains(s, want) })
}

// TestHopWaitsForWorkloadsToReachItsLauncher: with LiveMigrate on the CR
// (policy Auto = Wait) a hop ends only when every VMI runs the new
// virt-launcher; the wait says how many are left.
func TestHopWaitsForWorkloadsToReachItsLauncher(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodOperator)
	h.patchCR(t, `{"spec":{"workloadUpdateStrategy":{"workloadUpdateMethods":["LiveMigrate"]}}}`) // no new deployment id: struct fields do not count
	for _, n := range []string{"vma", "vmb"} {
		if _, err := h.sim.CreateVMI(context.Background(), "default", n); err != nil {
			t.Fatal(err)
		}
	}
	h.sim.SlowMigrations(time.Second)
	res, said, err := h.runWith(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator), executor.StepOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := h.sim.Count(simulator.VMIMigrated); n != 2 {
		t.Errorf("%d VMIs migrated when the step returned, want 2", n)
	}
	if res.Workloads.Outdated.Count != 0 || res.Workloads.Moved != 2 || !saidAny(said, "waiting for VMIs to move to the v1.8.4 virt-launcher (LiveMigrate)") {
		t.Errorf("outdated %v, progress %q", res.Workloads.Outdated, said)
	}
}

// TestOutdatedWorkloadsThatNeverDrainFailTheHop names the count and VMIs.
func TestOutdatedWorkloadsThatNeverDrainFailTheHop(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodOperator)
	h.patchCR(t, `{"spec":{"workloadUpdateStrategy":{"workloadUpdateMethods":["LiveMigrate"]}}}`) // no new deployment id: struct fields do not count
	if _, err := h.sim.CreateVMI(context.Background(), "default", "stuck"); err != nil {
		t.Fatal(err)
	}
	h.sim.FailMigrations("default/stuck")
	_, _, err := h.runWith(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator), executor.StepOptions{
		Workloads: planner.Workloads{Policy: planner.WorkloadsAuto, Timeout: 3 * time.Second}})
	if fault.ReasonOf(err) != executor.ReasonWorkloadsOutdated || !strings.Contains(err.Error(), "1 VMIs still run a virt-launcher older than v1.8.4") ||
		!strings.Contains(err.Error(), "default/stuck") || !fault.Stalls(err) {
		t.Fatalf("hop with a VMI that never migrates: %v, want a terminal WorkloadsOutdated naming it", err)
	}
}

// TestReportOnlyWithoutUpdateMethods: VMIs stay outdated until restarted,
// and the result says so.
func TestReportOnlyWithoutUpdateMethods(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodOperator)
	h.patchCR(t, `{"spec":{"workloadUpdateStrategy":null}}`) // an administrator took kvgitops's default away
	if _, err := h.sim.CreateVMI(context.Background(), "default", "vma"); err != nil {
		t.Fatal(err)
	}
	res, _, err := h.runWith(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator), executor.StepOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Workloads.CannotMove.Names, []string{"default/vma"}) || !strings.Contains(res.Workloads.Note, "until restarted") {
		t.Errorf("workloads %+v, want default/vma outdated and a note that it stays so", res.Workloads)
	}
}

// TestANextStepWaitsForTheInstallToBeReady: up to v1.8.x observed ==
// target before the readiness check passes; a step started in that window
// (an agent restarted there) waits for it.
func TestANextStepWaitsForTheInstallToBeReady(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.8.3", planner.MethodOperator)
	// The window must outlast a loaded machine's pause between seeing it
	// and the step's first observation (2 s did not, once, under make test).
	h.sim.SlowReadiness(5 * time.Second)
	h.patchCR(t, `{"spec":{"imageTag":"v1.8.4"}}`)
	eventually(t, func() bool {
		o := h.observe(t)
		return o.KubeVirt.Observed == "v1.8.4" && o.Settling()
	}, "observed v1.8.4 before it is ready")
	_, said, err := h.runWith(t, upgrade("v1.8.4", "v1.9.0", planner.MethodImageTag), executor.StepOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ready, next time.Time
	for _, tr := range h.sim.Transitions() {
		switch {
		case tr.Kind == simulator.HopCompleted && tr.To == "v1.8.4":
			ready = tr.At
		case tr.Kind == simulator.HopStarted && tr.To == "v1.9.0":
			next = tr.At
		}
	}
	if ready.IsZero() || next.Before(ready) || !saidAny(said, "installed but not ready yet") {
		t.Errorf("v1.8.4 ready at %v, hop to v1.9.0 started at %v, progress %q: the next hop must wait", ready, next, said)
	}
}

// TestAHopResumedInItsReadinessWindowFinishes: a hop whose agent died is
// resumed while the operator already reports the target observed but not
// yet ready (up to v1.8): the step waits for it and succeeds, it does not
// call its plan stale (which left the step without its start, and so
// without its deadline, once under make test).
func TestAHopResumedInItsReadinessWindowFinishes(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.8.3", planner.MethodOperator)
	h.sim.SlowReadiness(5 * time.Second)
	h.patchCR(t, `{"spec":{"imageTag":"v1.8.4"}}`) // what the agent that died did
	eventually(t, func() bool {
		o := h.observe(t)
		return o.KubeVirt.Observed == "v1.8.4" && o.Settling()
	}, "observed v1.8.4 before it is ready")
	res, said, err := h.runWith(t, upgrade("v1.8.3", "v1.8.4", planner.MethodImageTag), executor.StepOptions{})
	if err != nil || !res.AlreadyDone || !saidAny(said, "the hop to v1.8.4 is finishing") {
		t.Fatalf("resumed in the readiness window: %v, already done %v, progress %q", err, res.AlreadyDone, said)
	}
	if !simulator.Has(simulator.HopCompleted, "v1.8.4")(h.sim.Transitions()) {
		t.Error("the step returned before the hop completed")
	}
}

// TestVersionAsTheOperatorReadsIt: the version and registry virt-operator
// installs, read as it reads its own image (util/config.go): the name must
// end in virt-operator, or the registry is empty (and before v1.0 the
// version too); a digest takes KUBEVIRT_VERSION.
func TestVersionAsTheOperatorReadsIt(t *testing.T) {
	shasums := map[string]string{"VIRT_API_SHASUM": "sha256:1", "VIRT_CONTROLLER_SHASUM": "sha256:2", "VIRT_HANDLER_SHASUM": "sha256:3", "VIRT_LAUNCHER_SHASUM": "sha256:4"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	for _, tt := range []struct {
		env               map[string]string
		version, registry string
	}{
		{map[string]string{"VIRT_OPERATOR_IMAGE": "quay.io/kubevirt/virt-operator:v1.8.4"}, "v1.8.4", "quay.io/kubevirt"},
		{map[string]string{"VIRT_OPERATOR_IMAGE": "registry.example.com/mirror/kv-operator:v1.8.4", "KUBEVIRT_VERSION": "v1.8.4"}, "v1.8.4", ""},
		{map[string]string{"VIRT_OPERATOR_IMAGE": "registry.example.com/mirror/kv-operator:v1.8.4"}, "latest", ""},
		{map[string]string{"OPERATOR_IMAGE": "registry.example.com/mirror/kv-operator:v0.36.0"}, "", ""},
		{map[string]string{"VIRT_OPERATOR_IMAGE": "registry.example.com/mirror/my-virt-operator:v1.8.4"}, "v1.8.4", "registry.example.com/mirror"},
		{map[string]string{"VIRT_OPERATOR_IMAGE": "registry.example.com/kv@sha256:0123", "KUBEVIRT_VERSION": "v1.8.4"}, "v1.8.4", ""},
		{map[string]string{"OPERATOR_IMAGE": "index.docker.io/kubevirt/virt-operator:v0.26.0"}, "v0.26.0", "index.docker.io/kubevirt"},
		{with(shasums, "OPERATOR_IMAGE", "index.docker.io/kubevirt/virt-operator@sha256:0123", "KUBEVIRT_VERSION", "v0.26.0"), "v0.26.0", "index.docker.io/kubevirt"},
		{map[string]string{"OPERATOR_IMAGE": "index.docker.io/kubevirt/virt-operator@sha256:0123", "KUBEVIRT_VERSION": "v0.26.0"}, "latest", "index.docker.io/kubevirt"},
		{map[string]string{"VIRT_OPERATOR_IMAGE": "registry:5000/kubevirt/virt-operator", "OPERATOR_IMAGE": "quay.io/x:v1"}, "latest", "registry:5000/kubevirt"},
		{map[string]string{"VIRT_OPERATOR_IMAGE": "quay.io/kubevirt/virt-operator@sha256:0123"}, "latest", "quay.io/kubevirt"},
		{map[string]string{}, "", ""}, // no image variable: the operator does not start
	} {
		if v, r := release.OperatorVersion(tt.env); v != tt.version || r != tt.registry {
			t.Errorf("OperatorVersion(%v) = %q, %q; want %q, %q", tt.env, v, r, tt.version, tt.registry)
		}
	}
}

// TestTeardownSaysWhatItWaitsFor: the operator deletes its CRDs first
// (with its own finalizer on them) and the VMIs take time to shut down;
// the progress says so.
func TestTeardownSaysWhatItWaitsFor(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.8.4", planner.MethodOperator)
	for _, n := range []string{"vma", "vmb", "vmc"} {
		if _, err := h.sim.CreateVMI(context.Background(), "default", n); err != nil {
			t.Fatal(err)
		}
	}
	_, said, err := h.runWith(t, teardownSteps("v1.8.4")[0], executor.StepOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !saidAny(said, "CRDs terminating: ") {
		t.Errorf("progress %q does not say what the deletion waits for", said)
	}
	if o := h.observe(t); o.KubeVirt != nil || o.WorkloadCount != 0 {
		t.Errorf("after the deletion: CR %v, %d VMs and VMIs", o.KubeVirt, o.WorkloadCount)
	}
}

// TestOperatorGoneMidTeardownLeavesCRDsStuck: the operator put its
// finalizer on its CRDs and vanished; without the opt-in the status says
// exactly what is stuck; with it the CRDs are released.
func TestOperatorGoneMidTeardownLeavesCRDsStuck(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.8.4", planner.MethodOperator)
	ctx := context.Background()
	if _, err := h.sim.CreateVMI(ctx, "default", "vma"); err != nil {
		t.Fatal(err)
	}
	h.sim.HoldVMIShutdown(true) // the VMI takes its time: the CRDs wait on it
	if err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Delete(ctx, "kubevirt", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		return len(slices.DeleteFunc(h.observe(t).Remnants, func(r executor.Remnant) bool { return !r.Deleting })) > 0
	}, "the operator deletes its CRDs")
	if err := h.dyn.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}).Namespace("kubevirt").Delete(ctx, "virt-operator", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.sim.WaitFor(ctx, simulator.Has(simulator.OperatorGone, "")); err != nil {
		t.Fatal(err)
	}
	h.sim.HoldVMIShutdown(false)
	_, _, err := h.runWith(t, teardownSteps("v1.8.4")[0], executor.StepOptions{Deadline: time.Now().Add(20 * time.Second)})
	if fault.ReasonOf(err) != executor.ReasonStuckDeleting || !strings.Contains(err.Error(), executor.CRDFinalizer) || !strings.Contains(err.Error(), "removeStuckFinalizers") {
		t.Fatalf("stuck teardown: %v, want StuckDeleting naming the CRDs' finalizer and the opt-in", err)
	}
	o := h.observe(t)
	if o.StuckCRDs == 0 {
		t.Fatalf("observation counts no stuck CRD: %+v", o.Remnants)
	}
	res, _, err := h.runWith(t, planner.Step{Type: planner.StepRemoveStuckFinalizers, From: "v1.8.4"}, executor.StepOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(res.Notes, " "), "released CRD") {
		t.Errorf("notes %v", res.Notes)
	}
	eventually(t, func() bool { o := h.observe(t); return o.KubeVirt == nil && o.StuckCRDs == 0 }, "CR and CRDs released")
}

// TestReinstallWaitsForATerminatingNamespace: an install right after a
// teardown waits for the namespace to go, instead of failing.
func TestReinstallWaitsForATerminatingNamespace(t *testing.T) {
	h := start(t, harnessOptions{})
	ctx := context.Background()
	kube := kubernetes.NewForConfigOrDie(h.admin)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubevirt"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	hold := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "hold", Namespace: "kubevirt", Finalizers: []string{"example.com/hold"}}}
	if _, err := kube.CoreV1().ConfigMaps("kubevirt").Create(ctx, hold, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := kube.CoreV1().Namespaces().Delete(ctx, "kubevirt", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(2 * time.Second)
		cm, err := kube.CoreV1().ConfigMaps("kubevirt").Get(ctx, "hold", metav1.GetOptions{})
		if err == nil {
			cm.Finalizers = nil
			_, _ = kube.CoreV1().ConfigMaps("kubevirt").Update(ctx, cm, metav1.UpdateOptions{})
		}
	}()
	_, said, err := h.runWith(t, planner.Step{Type: planner.StepInstall, To: "v1.8.4", Method: planner.MethodOperator}, executor.StepOptions{})
	if err != nil {
		t.Fatalf("install after a teardown: %v", err)
	}
	if !saidAny(said, "still terminating") {
		t.Errorf("progress %q does not say it waited for the namespace", said)
	}
}

// TestStrayKubeVirtIsObserved: a second CR anywhere is named.
func TestStrayKubeVirtIsObserved(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.0.0", planner.MethodOperator) // v1.0 has no create webhook
	kv, err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Get(context.Background(), "kubevirt", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kv.SetNamespace("default")
	kv.SetResourceVersion("")
	kv.SetUID("")
	kv.SetFinalizers(nil)
	delete(kv.Object, "status")
	if _, err := h.dyn.Resource(kvGVR).Namespace("default").Create(context.Background(), kv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := h.observe(t).StrayKubeVirts; !slices.Equal(got, []string{"default/kubevirt", "kubevirt/kubevirt"}) {
		t.Errorf("stray CRs %v, want both named", got)
	}
}
