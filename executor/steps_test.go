package executor_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/release"
	"github.com/kvgitops/kvgitops/test/simulator"
)

func TestInstall(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.8.4", planner.MethodOperator)
	o := h.observe(t)
	if o.Installed != "v1.8.4" || o.Mode != planner.ModeLocked || o.OperatorVersion != "v1.8.4" || !o.Operator.RolledOut {
		t.Errorf("after install: %+v, operator %+v", o.Observed, o.Operator)
	}
	if got := h.sim.CompletedHops(); !slices.Equal(got, []simulator.Hop{{To: "v1.8.4"}}) {
		t.Errorf("simulator hops %v", got)
	}
	// Running it again is a no-op.
	if res := h.mustRun(t, planner.Step{Type: planner.StepInstall, To: "v1.8.4", Method: planner.MethodOperator}); !res.AlreadyDone {
		t.Error("a second install should be AlreadyDone")
	}
}

func TestInstallWithTheImageTagMethodPinsTheTag(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.1.0", planner.MethodImageTag)
	if o := h.observe(t); o.Mode != planner.ModeImageTag || o.KubeVirt.ImageTag != "v1.1.0" {
		t.Errorf("mode %s imageTag %q, want the tag pinned", o.Mode, o.KubeVirt.ImageTag)
	}
}

func TestThreeHopLockedUpgrade(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.5.3", planner.MethodOperator)
	for _, hop := range [][2]string{{"v1.5.3", "v1.6.6"}, {"v1.6.6", "v1.7.4"}, {"v1.7.4", "v1.8.4"}} {
		res := h.mustRun(t, upgrade(hop[0], hop[1], planner.MethodOperator))
		if res.AlreadyDone || res.OperatorFirst {
			t.Errorf("hop %v: %+v", hop, res)
		}
	}
	want := []simulator.Hop{{To: "v1.5.3"}, {From: "v1.5.3", To: "v1.6.6"}, {From: "v1.6.6", To: "v1.7.4"}, {From: "v1.7.4", To: "v1.8.4"}}
	if got := h.sim.CompletedHops(); !slices.Equal(got, want) {
		t.Errorf("simulator hops %v, want %v", got, want)
	}
	if h.sim.Count(simulator.HopRefused) != 0 {
		t.Error("the simulator refused a hop")
	}
}

func TestImageTagModeUpgradeMovesOperatorThenTag(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodImageTag)
	h.mustRun(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperatorThenImageTag))
	o := h.observe(t)
	if o.Installed != "v1.8.4" || o.OperatorVersion != "v1.8.4" || o.KubeVirt.ImageTag != "v1.8.4" {
		t.Errorf("after OperatorThenImageTag: installed %s operator %s tag %s", o.Installed, o.OperatorVersion, o.KubeVirt.ImageTag)
	}
}

func TestOperatorMethodUnpinsTheTag(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodImageTag)
	h.mustRun(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator))
	if o := h.observe(t); o.Installed != "v1.8.4" || o.Mode != planner.ModeLocked {
		t.Errorf("after an Operator hop on a pinned CR: installed %s mode %s", o.Installed, o.Mode)
	}
}

// TestImageTagHopUpdatesTheOperatorFirstOnRBACFailure: v1.8 grants rules
// v1.7's operator does not hold (the genuine RBAC says so), and a v1.7.4
// operator runs the target's install strategy, so the apiserver refuses.
func TestImageTagHopUpdatesTheOperatorFirstOnRBACFailure(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodOperator)
	res := h.mustRun(t, upgrade("v1.7.4", "v1.8.4", planner.MethodImageTag))
	if !res.OperatorFirst || len(res.Notes) == 0 || !strings.Contains(strings.Join(res.Notes, " "), "attempting to grant RBAC permissions not currently held") {
		t.Errorf("result %+v, want OperatorFirst with the RBAC message noted", res)
	}
	if h.sim.Count(simulator.RBACForbidden) == 0 {
		t.Error("the simulator never refused the RBAC: the test did not exercise the fallback")
	}
	if o := h.observe(t); o.Installed != "v1.8.4" || o.OperatorVersion != "v1.8.4" {
		t.Errorf("after the fallback: installed %s operator %s", o.Installed, o.OperatorVersion)
	}
}

func TestImageTagHopWithoutNewRBACKeepsTheOperator(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.8.3", planner.MethodOperator)
	res := h.mustRun(t, upgrade("v1.8.3", "v1.8.4", planner.MethodImageTag))
	if res.OperatorFirst {
		t.Error("no RBAC failure, yet the operator was updated")
	}
	if o := h.observe(t); o.Installed != "v1.8.4" || o.OperatorVersion != "v1.8.3" {
		t.Errorf("installed %s operator %s, want v1.8.4 under v1.8.3", o.Installed, o.OperatorVersion)
	}
}

func TestStalledHopTimesOutWithWhatWasSeen(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodOperator)
	h.sim.StallHop("v1.8.4")
	// 10 s: under make test's load the checks before the wait took 3 s.
	_, err := h.run(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator), 10*time.Second)
	var e *fault.Error
	if !errors.As(err, &e) || e.Reason != executor.ReasonHopTimeout || !e.Stall {
		t.Fatalf("stalled hop: %v, want a terminal HopTimeout", err)
	}
	for _, want := range []string{"target v1.8.4", "observed v1.7.4", "Progressing=True UpdateInProgress"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("timeout message %q does not say %q", e.Message, want)
		}
	}
}

// TestPersistentDeploymentFailedFailsAfterTheGrace: a failure that
// outlasts the operator's retries fails the hop with the operator's error.
func TestPersistentDeploymentFailedFailsAfterTheGrace(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodOperator)
	h.sim.FailHop("v1.8.4", "daemonSet virt-handler rollout failed")
	_, err := h.run(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator), 20*time.Second)
	if fault.ReasonOf(err) != executor.ReasonHopFailed || !strings.Contains(err.Error(), "virt-handler rollout failed") {
		t.Fatalf("failing hop: %v, want HopFailed with the operator's error", err)
	}
	h.noViolations(t)
}

func TestDisruptedVMIStopsThePlan(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodOperator)
	if _, err := h.sim.CreateVMI(context.Background(), "default", "db-0"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sim.CreateVMI(context.Background(), "default", "web-0"); err != nil {
		t.Fatal(err)
	}
	h.sim.DisruptVMIDuringNextHop("default", "db-0")
	res, err := h.run(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator), time.Minute)
	if fault.ReasonOf(err) != executor.ReasonWorkloadDisrupted || !fault.Stalls(err) {
		t.Fatalf("disrupted VMI: %v, want a terminal WorkloadDisrupted", err)
	}
	if !slices.Equal(res.Workloads.Disrupted.Names, []string{"default/db-0 (restarted)"}) || res.Workloads.RunningBefore != 2 {
		t.Errorf("workload report %+v", res.Workloads)
	}
}

func TestStalePreconditionIsRefused(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodOperator)
	_, err := h.run(t, upgrade("v1.6.6", "v1.7.4", planner.MethodOperator), time.Minute)
	if res, _ := h.run(t, upgrade("v1.6.6", "v1.7.4", planner.MethodOperator), time.Minute); !res.AlreadyDone {
		t.Errorf("a hop the cluster is past should be AlreadyDone, got %v", err)
	}
	_, err = h.run(t, upgrade("v1.5.3", "v1.6.6", planner.MethodOperator), time.Minute)
	if !errors.Is(err, executor.ErrStalePlan) {
		t.Fatalf("hop from a version not installed: %v, want ErrStalePlan", err)
	}
	if h.sim.Count(simulator.OperatorRolloutStarted) != 1 {
		t.Error("a stale step changed the cluster")
	}
}

var teardownSteps = func(from string) []planner.Step {
	return []planner.Step{
		{Type: planner.StepDeleteKubeVirt, From: from},
		{Type: planner.StepDeleteLeftovers, From: from},
		{Type: planner.StepDeleteOperator, From: from},
	}
}

func TestTeardown(t *testing.T) {
	for _, tt := range []struct {
		tag       string
		leftovers bool
		finalizer string
	}{
		{"v0.26.0", true, "foregroundDeleteKubeVirt"},
		{"v1.9.0", false, "kubevirt.io/foregroundDeleteKubeVirt"},
	} {
		t.Run(tt.tag, func(t *testing.T) {
			h := start(t, harnessOptions{})
			h.installAsStored(t, tt.tag)
			if fs := h.observe(t).KubeVirt.Finalizers; !slices.Equal(fs, []string{tt.finalizer}) {
				t.Errorf("finalizers %v, want [%s]", fs, tt.finalizer)
			}
			res := h.mustRun(t, teardownSteps(tt.tag)[0])
			if o := h.observe(t); o.KubeVirt != nil {
				t.Fatalf("CR still present after DeleteKubeVirt: %+v", res)
			}
			if got := len(h.observe(t).Leftovers) > 0; got != tt.leftovers {
				t.Errorf("leftovers present %t, want %t: %v", got, tt.leftovers, h.observe(t).Leftovers)
			}
			h.mustRun(t, teardownSteps(tt.tag)[1])
			if l := h.observe(t).Leftovers; len(l) != 0 {
				t.Errorf("leftovers after cleanup: %v", l)
			}
			h.mustRun(t, teardownSteps(tt.tag)[2])
			eventually(t, func() bool {
				o := h.observe(t)
				return o.Operator == nil && o.KubeVirtVersion == "" && !h.namespaceExists(t)
			}, "operator, CRD and namespace gone")
		})
	}
}

func TestTeardownRefusedWithWorkloadsUnderBlockingStrategy(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.8.4", planner.MethodOperator)
	h.patchCR(t, `{"spec":{"uninstallStrategy":"BlockUninstallIfWorkloadsExist"}}`)
	eventually(t, func() bool { return h.sim.Count(simulator.HopCompleted) == 2 }, "the strategy change settles")
	if _, err := h.sim.CreateVMI(context.Background(), "default", "vm1"); err != nil {
		t.Fatal(err)
	}
	_, err := h.run(t, teardownSteps("v1.8.4")[0], 20*time.Second)
	if fault.ReasonOf(err) != executor.ReasonUninstallBlocked || !strings.Contains(err.Error(), "Virtual Machine Instances present") {
		t.Fatalf("teardown with a VMI: %v, want UninstallBlocked", err)
	}
	if o := h.observe(t); o.KubeVirt == nil || o.KubeVirt.Deleting {
		t.Error("a refused teardown must leave the CR alone")
	}
}

func TestStuckCRAfterTheOperatorWentFirst(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.1.0", planner.MethodOperator)
	// Someone deletes both manifests at once: the CR delete is accepted,
	// then the operator is gone before it finishes.
	h.sim.SlowDeletion(time.Hour)
	ctx := context.Background()
	if err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Delete(ctx, "kubevirt", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.sim.WaitFor(ctx, simulator.Has(simulator.DeletionStarted, "")); err != nil {
		t.Fatal(err)
	}
	if err := h.dyn.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}).Namespace("kubevirt").Delete(ctx, "virt-operator", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.sim.WaitFor(ctx, simulator.Has(simulator.OperatorGone, "")); err != nil {
		t.Fatal(err)
	}
	_, err := h.run(t, teardownSteps("v1.1.0")[0], 10*time.Second)
	if fault.ReasonOf(err) != executor.ReasonStuckDeleting || !strings.Contains(err.Error(), "removeStuckFinalizers") {
		t.Fatalf("stuck CR: %v, want StuckDeleting pointing at the opt-in", err)
	}
	res := h.mustRun(t, planner.Step{Type: planner.StepRemoveStuckFinalizers, From: "v1.1.0"})
	if !strings.Contains(strings.Join(res.Notes, " "), "after deleting virt-operator-validator") {
		t.Errorf("notes %v", res.Notes)
	}
	for _, s := range teardownSteps("v1.1.0") {
		h.mustRun(t, s)
	}
	if o := h.observe(t); o.KubeVirt != nil || len(o.Leftovers) != 0 {
		t.Errorf("after remediation: CR %v, leftovers %v", o.KubeVirt, o.Leftovers)
	}
}

func TestTamperedManifestAppliesNothing(t *testing.T) {
	h := start(t, harnessOptions{})
	h.rel.Mutate("v1.8.4/kubevirt-operator.yaml", func(b []byte) []byte {
		return append(b, "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: pwn}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: ServiceAccount, name: default, namespace: default}]\n"...)
	})
	_, err := h.run(t, planner.Step{Type: planner.StepInstall, To: "v1.8.4", Method: planner.MethodOperator}, 10*time.Second)
	if fault.ReasonOf(err) != release.ReasonManifestRejected {
		t.Fatalf("tampered manifest: %v", err)
	}
	if h.namespaceExists(t) {
		t.Error("the namespace of a refused manifest was created")
	}
	if _, err := h.dyn.Resource(schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}).Get(context.Background(), "pwn", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the extra binding exists: %v", err)
	}
}

func (h *harness) namespaceExists(t testing.TB) bool {
	t.Helper()
	_, err := h.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Get(context.Background(), "kubevirt", metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func eventually(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestEveryPlannedMethodCanRunAHop: a method the planner may plan has a way
// to run in the executor (caught here, not as InvalidStep in a cluster).
func TestEveryPlannedMethodCanRunAHop(t *testing.T) {
	for _, m := range planner.PlannedMethods() {
		if !executor.CanRunHopBy(m) {
			t.Errorf("the executor cannot run a hop by %s", m)
		}
	}
}
