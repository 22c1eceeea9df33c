package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/stack"
)

// hopStarted reports whether the simulator saw a hop to version start.
func hopStarted(sim *simulator.Simulator, version string) bool {
	return slices.ContainsFunc(sim.Transitions(), func(t simulator.Transition) bool { return t.Kind == simulator.HopStarted && t.To == version })
}

// TestVMIsThatCannotMoveAreRefusedByName: of 10 VMIs under LiveMigrate,
// 2 cannot migrate (a host device, an RWO disk): the plan is refused,
// naming both with the reason from their condition, and nothing is
// applied; accepted by label, the upgrade runs, the 8 move, the 2 stay on
// the old virt-launcher untouched, and the status names them.
func TestVMIsThatCannotMoveAreRefusedByName(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.7.4\n", "install")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.7.4")
	ctx := t.Context()
	batch := simulator.WithLabels(map[string]string{"tier": "batch"})
	if err := e.st.Sim.CreateVMIs(ctx, "default", "web", 8); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Sim.CreateVMI(ctx, "default", "trainer", simulator.WithHostDevice(), batch); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Sim.CreateVMI(ctx, "default", "db-0", simulator.NotMigratable("DisksNotLiveMigratable"), batch); err != nil {
		t.Fatal(err)
	}
	// A VMI whose guest has ended keeps its old virt-launcher image in its
	// status: KubeVirt does not count it outdated, neither does kvgitops.
	if _, err := e.st.Sim.CreateVMI(ctx, "default", "done", simulator.NotMigratable("DisksNotLiveMigratable")); err != nil {
		t.Fatal(err)
	}
	e.setVMIPhase("default", "done", "Succeeded")
	e.commit("  version: v1.8.4\n", "upgrade")
	st := e.wait(func(s agent.Status) bool { return s.Reason == "WorkloadsCannotMove" }, "the plan refused")
	for _, want := range []string{"2 of 10 running VMIs will not live-migrate", "default/trainer StaysOutdated", "HostDeviceNotLiveMigratable", "default/db-0 StaysOutdated", "DisksNotLiveMigratable"} {
		if !strings.Contains(st.Message, want) {
			t.Errorf("refusal %q lacks %q", st.Message, want)
		}
	}
	if st.Phase != agent.PhaseRefused || st.Forecast == nil || st.Forecast.Refused != 2 || len(st.Forecast.Unmoved) != 2 {
		t.Errorf("status %s, forecast %+v", st.Phase, st.Forecast)
	}
	if hopStarted(e.st.Sim, "v1.8.4") {
		t.Fatal("a refused plan started its hop")
	}
	e.commit("  version: v1.8.4\n  workloads:\n    accept:\n      labels:\n        tier: batch\n", "accept the batch VMs as they are")
	st = e.succeeded("v1.8.4")
	w := st.Workloads
	if w == nil || w.Moved != 8 || w.CannotMove.Count != 2 || !slices.Equal(w.CannotMove.Names, []string{"default/db-0", "default/trainer"}) ||
		!strings.Contains(w.Note, "2 VMIs stay on a virt-launcher older than v1.8.4") {
		t.Errorf("workloads %+v", w)
	}
	for _, tr := range e.st.Sim.Transitions() {
		if tr.Kind == simulator.MigrationStarted && (strings.HasPrefix(tr.Message, "default/trainer ") || strings.HasPrefix(tr.Message, "default/db-0 ")) {
			t.Errorf("a VMI that cannot migrate was touched: %s", tr.Message)
		}
	}
}

// TestUnmovableRestartStartsAVMAgainOnTheNewLauncher: a VM (run strategy
// Always) whose disk cannot migrate is left on the old virt-launcher by
// KubeVirt; with spec.workloads.unmovable: Restart the agent (under
// deploy/'s RBAC and admission policy) deletes its VMI after the hop, the
// VM starts it again on the new virt-launcher, and the status names it
// restarted; a migratable VMI beside it moves without a restart.
func TestUnmovableRestartStartsAVMAgainOnTheNewLauncher(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.7.4\n", "install")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.7.4")
	ctx := t.Context()
	if _, err := e.st.Sim.CreateVM(ctx, "default", "db", simulator.RunStrategyAlways, simulator.NotMigratable("DisksNotLiveMigratable")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Sim.CreateVMI(ctx, "default", "web"); err != nil {
		t.Fatal(err)
	}
	e.commit("  version: v1.8.4\n  workloads:\n    unmovable: Restart\n", "upgrade, restarting what cannot move")
	st := e.succeeded("v1.8.4")
	if w := st.Workloads; w == nil || w.Moved != 1 || !slices.Equal(w.Restarted.Names, []string{"default/db"}) || w.CannotMove.Count != 0 {
		t.Errorf("workloads %+v, want web moved and db restarted", st.Workloads)
	}
	restarts := 0
	for _, tr := range e.st.Sim.Transitions() {
		if tr.Kind == simulator.VMIRestarted && strings.HasPrefix(tr.Message, "default/db ") && strings.HasSuffix(tr.Message, ":v1.8.4") {
			restarts++
		}
	}
	if restarts != 1 {
		t.Errorf("db started again on the v1.8.4 virt-launcher %d times, want once", restarts)
	}
}

// setVMIPhase sets a VMI's status.phase, as virt-handler would.
func (e *e2e) setVMIPhase(ns, name, phase string) {
	e.t.Helper()
	vmis := e.dyn().Resource(schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachineinstances"}).Namespace(ns)
	u, err := vmis.Get(e.t.Context(), name, metav1.GetOptions{})
	if err == nil {
		_ = unstructured.SetNestedField(u.Object, phase, "status", "phase")
		_, err = vmis.Update(e.t.Context(), u, metav1.UpdateOptions{})
	}
	if err != nil {
		e.t.Fatalf("set VMI %s/%s %s: %v", ns, name, phase, err)
	}
}

// TestTwoHundredVMsEvictedInBatches: 200 VMs (run strategy Always) under
// Evict at the default batch size (10), the interval set to 2s from Git
// (spec.kubevirtConfig): the hop completes, every VM restarted once on the
// new virt-launcher, ten at a time, the batches at least 2s apart; the
// wait is sized from the count and the throttles, not a flat hour.
func TestTwoHundredVMsEvictedInBatches(t *testing.T) {
	e := setup(t, stack.Options{Simulator: simulator.Options{ControllerInterval: 200 * time.Millisecond}})
	config := "  kubevirtConfig:\n    workloadUpdateStrategy:\n      workloadUpdateMethods: [Evict]\n      batchEvictionInterval: 2s\n" +
		"  workloads:\n    unmovable: Accept\n"
	e.commit("  version: v1.7.4\n"+config, "install, VMs restarted by evictions")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.7.4")
	ctx := t.Context()
	for i := range 200 {
		if _, err := e.st.Sim.CreateVM(ctx, "default", fmt.Sprintf("vm-%03d", i), simulator.RunStrategyAlways); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	e.commit("  version: v1.8.4\n"+config, "upgrade")
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	st, err := e.st.WaitStatus(wctx, "e2e", stack.Phase(agent.PhaseSucceeded, "v1.8.4"))
	if err != nil {
		t.Fatalf("200 VMs under Evict: %v; %s %s", err, st.Reason, st.Message)
	}
	t.Logf("200 VMs evicted and restarted in %s", time.Since(start).Round(time.Second))
	var batches []time.Time
	perBatch := map[int]int{}
	for _, tr := range e.st.Sim.Transitions() {
		switch tr.Kind {
		case simulator.EvictionBatch:
			batches = append(batches, tr.At)
		case simulator.VMIShutDown:
			perBatch[len(batches)]++
		default: // the rest says nothing of batches
		}
	}
	if len(batches) != 20 {
		t.Errorf("%d eviction batches, want 20 of 10", len(batches))
	}
	for i := 1; i < len(batches); i++ {
		if gap := batches[i].Sub(batches[i-1]); gap < 2*time.Second {
			t.Errorf("batch %d came %s after the one before; the interval is 2s", i+1, gap)
		}
	}
	for b, n := range perBatch {
		if n > 10 {
			t.Errorf("batch %d shut down %d VMIs, more than batchEvictionSize", b, n)
		}
	}
	if w := st.Workloads; w == nil || w.Restarted.Count != 200 || w.Disrupted.Count != 0 || w.Outdated.Count != 0 || len(w.Restarted.Names) > 20 {
		t.Errorf("workloads %+v", w)
	}
	if n := e.st.Sim.Count(simulator.VMIRestarted); n != 200 {
		t.Errorf("%d VMs restarted, want 200", n)
	}
}

// TestNoHopWhileAMigrationRuns: with policy ReportOnly the agent does not
// wait for the VMIs of a hop, but it never starts the next one while one
// of their live migrations runs (kubevirt#18720: the guest would die);
// the simulator records no interrupted migration, and the status says why
// it waits.
func TestNoHopWhileAMigrationRuns(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.6.6\n  workloads:\n    policy: ReportOnly\n", "install")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.6.6")
	if err := e.st.Sim.CreateVMIs(t.Context(), "default", "vm", 3); err != nil {
		t.Fatal(err)
	}
	e.st.Sim.SlowMigrations(4 * time.Second)
	e.commit("  version: v1.8.4\n  workloads:\n    policy: ReportOnly\n", "two hops")
	e.wait(func(s agent.Status) bool { return s.Reason == "MigrationsInFlight" }, "the next hop waiting for the migrations")
	e.succeeded("v1.8.4")
	running := map[string]bool{}
	for _, tr := range e.st.Sim.Transitions() {
		key, _, _ := strings.Cut(tr.Message, " ")
		switch tr.Kind {
		case simulator.MigrationStarted:
			running[key] = true
		case simulator.VMIMigrated, simulator.MigrationFailed, simulator.MigrationInterrupted:
			delete(running, key)
		case simulator.HopStarted:
			if len(running) > 0 {
				t.Errorf("hop to %s started while %v were live-migrating", tr.To, running)
			}
		default: // the rest says nothing of migrations in flight
		}
	}
}

// TestAnEvictedVMThatStaysOffIsNamed: under Evict with no eviction
// strategy a VM that runs Manual is shut down and stays off. Refused by
// the preflight (named) unless accepted; accepted, the hop succeeds and
// the status names the VM as shut down — never a silent success.
func TestAnEvictedVMThatStaysOffIsNamed(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.7.4\n", "install")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.7.4")
	patch := []byte(`{"spec":{"workloadUpdateStrategy":{"workloadUpdateMethods":["Evict"],"batchEvictionInterval":"1s"}}}`)
	if _, err := e.dyn().Resource(kvGVR).Namespace("kubevirt").Patch(t.Context(), "kubevirt", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Sim.CreateVM(t.Context(), "default", "manual", simulator.RunStrategyManual); err != nil {
		t.Fatal(err)
	}
	e.commit("  version: v1.8.4\n", "upgrade")
	st := e.wait(func(s agent.Status) bool { return s.Reason == "WorkloadsCannotMove" }, "the plan refused")
	if !strings.Contains(st.Message, "default/manual ShutDown") || !strings.Contains(st.Message, "run strategy Manual) leaves it off") {
		t.Errorf("refusal %q", st.Message)
	}
	e.commit("  version: v1.8.4\n  workloads:\n    accept:\n      names: [default/manual]\n", "accept")
	st = e.succeeded("v1.8.4")
	if w := st.Workloads; w == nil || !slices.Equal(w.ShutDown.Names, []string{"default/manual"}) || !strings.Contains(w.Note, "shut down by the update and stay off: default/manual") {
		t.Errorf("workloads %+v: want default/manual named as shut down", st.Workloads)
	}
	if last := st.Plan.Steps[len(st.Plan.Steps)-1]; !slices.ContainsFunc(last.Notes, func(n string) bool { return strings.Contains(n, "default/manual") }) {
		t.Errorf("the hop's notes %v do not name the VM shut down", last.Notes)
	}
}

// TestKubeVirtSettingsFromGit: spec.kubevirtConfig is applied to the CR
// (a Configure step, server-side apply as kvgitops), a hand change of one
// of its fields is reported as drift, and with spec.drift: Correct it is
// applied again.
func TestKubeVirtSettingsFromGit(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.8.4\n", "install")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.8.4")
	config := "  kubevirtConfig:\n    configuration:\n      evictionStrategy: LiveMigrate\n      migrations:\n        parallelMigrationsPerCluster: 3\n"
	e.commit("  version: v1.8.4\n"+config, "settings from Git")
	e.wait(func(s agent.Status) bool {
		return s.Phase == agent.PhaseSucceeded && s.Plan != nil && s.Plan.Action == "Configure"
	}, "the settings applied")
	n, _, _ := unstructured.NestedInt64(e.kv().Object, "spec", "configuration", "migrations", "parallelMigrationsPerCluster")
	if s, _, _ := unstructured.NestedString(e.kv().Object, "spec", "configuration", "evictionStrategy"); s != "LiveMigrate" || n != 3 {
		t.Fatalf("CR after Configure: evictionStrategy %q, parallelMigrationsPerCluster %d", s, n)
	}
	patch := []byte(`{"spec":{"configuration":{"migrations":{"parallelMigrationsPerCluster":7}}}}`)
	if _, err := e.dyn().Resource(kvGVR).Namespace("kubevirt").Patch(t.Context(), "kubevirt", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	st := e.wait(func(s agent.Status) bool { return s.Reason == "DriftDetected" }, "the hand change reported")
	if !strings.Contains(st.Message, `spec.configuration.migrations.parallelMigrationsPerCluster "7" (kvgitops left "3")`) {
		t.Errorf("drift %q", st.Message)
	}
	e.commit("  version: v1.8.4\n  drift: Correct\n"+config, "correct drift")
	e.wait(func(s agent.Status) bool {
		n, _, _ := unstructured.NestedInt64(e.kv().Object, "spec", "configuration", "migrations", "parallelMigrationsPerCluster")
		return s.Phase == agent.PhaseSucceeded && n == 3
	}, "the setting applied again")
}

// TestTeardownReleasesVMsHeldByFinalizers: KubeVirt's namespace was
// deleted by hand with VMs running; nothing removes their finalizers. The
// teardown names them and refuses without the opt-in; with it, kvgitops
// removes KubeVirt's finalizers once virt-controller is gone, and
// KubeVirt is gone for good.
func TestTeardownReleasesVMsHeldByFinalizers(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.8.4\n", "install")
	a := e.agent(stack.AgentOptions{})
	e.succeeded("v1.8.4")
	ctx := t.Context()
	if _, err := e.st.Sim.CreateVM(ctx, "default", "db", simulator.RunStrategyAlways); err != nil {
		t.Fatal(err)
	}
	a.Stop()
	// Someone deletes KubeVirt's namespace (the operator and virt-controller
	// with it) and the CR's finalizer by hand: the VMs keep running, on
	// KubeVirt's CRDs.
	e.deleteKubeVirtNamespaceByHand()
	e.commit("  state: Absent\n  teardown:\n    allowWorkloadRemoval: true\n", "remove KubeVirt")
	e.agent(stack.AgentOptions{})
	st := e.wait(func(s agent.Status) bool { return s.Reason == "StuckFinalizers" }, "the stuck workloads named")
	if !strings.Contains(st.Message, "VirtualMachineInstance default/db") || !strings.Contains(st.Message, "VirtualMachine default/db") {
		t.Errorf("refusal %q", st.Message)
	}
	e.commit("  state: Absent\n  teardown:\n    allowWorkloadRemoval: true\n    removeStuckFinalizers: true\n", "let kvgitops release them")
	e.wait(stack.Phase(agent.PhaseSucceeded, ""), "KubeVirt gone")
	for _, crd := range []string{"virtualmachineinstances.kubevirt.io", "virtualmachines.kubevirt.io"} {
		if e.present(crdGVR, "", crd) {
			t.Errorf("CRD %s is still there", crd)
		}
	}
}

// deleteKubeVirtNamespaceByHand deletes KubeVirt's namespace, then the CR's
// finalizer (nothing else would remove it), and waits for the namespace to
// go.
func (e *e2e) deleteKubeVirtNamespaceByHand() {
	t := e.t
	ctx := t.Context()
	ns := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	if err := e.dyn().Resource(ns).Delete(ctx, "kubevirt", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The documented remediation for the CR: its fail-closed validator
	// first (virt-operator is gone), then its finalizer.
	vwc := schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}
	if err := e.dyn().Resource(vwc).Delete(ctx, "virt-operator-validator", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	patch := []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`)
	for deadline := time.Now().Add(60 * time.Second); e.present(ns, "", "kubevirt"); time.Sleep(200 * time.Millisecond) {
		_, _ = e.dyn().Resource(kvGVR).Namespace("kubevirt").Patch(ctx, "kubevirt", types.JSONPatchType, patch, metav1.PatchOptions{})
		if time.Now().After(deadline) {
			t.Fatal("KubeVirt's namespace is still there after 60s")
		}
	}
}

// TestOutdatedVMIsAreNoSuccess: a hop whose VMIs do not move (every
// migration fails) fails on its workloads; the passes after it, which
// find KubeVirt itself at the desired version, do not turn that into
// UpToDate while the VMIs still run the old virt-launcher (found on two
// real nodes). Once KubeVirt's retries move them, it is a success.
func TestOutdatedVMIsAreNoSuccess(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.7.4\n", "install")
	e.agent(stack.AgentOptions{})
	e.succeeded("v1.7.4")
	if _, err := e.st.Sim.CreateVMI(t.Context(), "default", "stuck"); err != nil {
		t.Fatal(err)
	}
	e.st.Sim.FailMigrations("default/stuck")
	e.commit("  version: v1.8.4\n  workloads:\n    progressTimeout: 3s\n", "upgrade")
	st := e.wait(func(s agent.Status) bool { return s.Reason == "WorkloadsOutdated" }, "the hop failing on its VMIs")
	t.Logf("after the wait: %s %s: %s", st.Phase, st.Reason, st.Message)
	e.polls(3)
	st = e.wait(func(agent.Status) bool { return true }, "the status")
	if st.Reason != "WorkloadsOutdated" || !strings.Contains(st.Message, "v1.8.4 is installed, but 1 VMIs still run an older virt-launcher") {
		t.Errorf("with default/stuck still outdated the status says %s %s: %s", st.Phase, st.Reason, st.Message)
	}
	e.st.Sim.AllowMigrations("default/stuck")
	st = e.succeeded("v1.8.4")
	t.Logf("once moved: %s %s: %s", st.Phase, st.Reason, st.Message)
}

// TestARestartDoesNotEndTheWorkloadWait: the agent restarted while a hop
// waits for its VMIs to move (KubeVirt itself already at the new version)
// goes on waiting: no UpToDate while a VMI runs the old virt-launcher.
func TestARestartDoesNotEndTheWorkloadWait(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.7.4\n", "install")
	a := e.agent(stack.AgentOptions{})
	e.succeeded("v1.7.4")
	if _, err := e.st.Sim.CreateVMI(t.Context(), "default", "slow"); err != nil {
		t.Fatal(err)
	}
	e.st.Sim.SlowMigrations(20 * time.Second)
	e.commit("  version: v1.8.4\n", "upgrade")
	e.wait(func(s agent.Status) bool { return s.Reason == "WaitingForWorkloads" }, "the hop waiting for its VMI")
	a.Stop()
	e.agent(stack.AgentOptions{})
	e.polls(2)
	st := e.wait(func(agent.Status) bool { return true }, "the status")
	if st.Reason == "UpToDate" { // its migration takes 20 s
		t.Errorf("after a restart mid-wait the status says %s %s (%s) while default/slow is still migrating", st.Phase, st.Reason, st.Message)
	}
	st = e.succeeded("v1.8.4")
	if w := st.Workloads; w == nil || w.Moved != 1 {
		t.Errorf("workloads after the restart %+v, want default/slow moved", st.Workloads)
	}
}
