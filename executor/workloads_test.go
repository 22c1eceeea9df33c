package executor_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/test/simulator"
)

// TestAnInstallMovesVMsByLiveMigrationByDefault: the CR kvgitops creates
// has workloadUpdateMethods [LiveMigrate] (HCO's default), so a hop's VMIs
// follow it without anyone editing the CR by hand.
func TestAnInstallMovesVMsByLiveMigrationByDefault(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodOperator)
	if m := h.observe(t).KubeVirt.WorkloadUpdateMethods; !slices.Equal(m, []string{"LiveMigrate"}) {
		t.Fatalf("workloadUpdateMethods %v, want [LiveMigrate]", m)
	}
	if _, err := h.sim.CreateVMI(context.Background(), "default", "vma"); err != nil {
		t.Fatal(err)
	}
	res := h.mustRun(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator))
	if res.Workloads.Moved != 1 || h.sim.Count(simulator.VMIMigrated) != 1 {
		t.Errorf("workloads %+v, %d migrated", res.Workloads, h.sim.Count(simulator.VMIMigrated))
	}
}

// TestConfigureAppliesKubeVirtConfig: a Configure step applies
// spec.kubevirtConfig with server-side apply, as the agent's identity
// under the admission policy, and a second run finds nothing to do.
func TestConfigureAppliesKubeVirtConfig(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.8.4", planner.MethodOperator)
	d, err := planner.ParseDesired([]byte(`apiVersion: kvgitops.dev/v1alpha1
kind: KubeVirtDesiredState
spec:
  version: v1.8.4
  kubevirtConfig:
    workloadUpdateStrategy:
      workloadUpdateMethods: [LiveMigrate, Evict]
      batchEvictionInterval: 30s
    configuration:
      developerConfiguration:
        featureGates: [Snapshot]
      evictionStrategy: LiveMigrate
      migrations:
        parallelMigrationsPerCluster: 3
`))
	if err != nil {
		t.Fatal(err)
	}
	step := planner.Step{Type: planner.StepConfigure, From: "v1.8.4", To: "v1.8.4"}
	res, _, err := h.runWith(t, step, executor.StepOptions{Config: d.KubeVirtConfig})
	if err != nil || res.AlreadyDone {
		t.Fatalf("configure: %v (already done %t)", err, res.AlreadyDone)
	}
	kv := h.observe(t).KubeVirt
	if diff := d.KubeVirtConfig.Differences(kv.Spec); len(diff) != 0 || !slices.Equal(kv.FeatureGates, []string{"Snapshot"}) {
		t.Errorf("after Configure: %v, gates %v", diff, kv.FeatureGates)
	}
	if res, _, err := h.runWith(t, step, executor.StepOptions{Config: d.KubeVirtConfig}); err != nil || !res.AlreadyDone {
		t.Errorf("second Configure: %v, already done %t", err, res.AlreadyDone)
	}
}

// TestNothingChangesKubeVirtWhileAMigrationRuns: a hop, a Configure step
// and drift correction wait (transient MigrationsInFlight) while a live
// migration runs, and touch nothing.
func TestNothingChangesKubeVirtWhileAMigrationRuns(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodOperator)
	if _, err := h.sim.CreateVMI(context.Background(), "default", "vma"); err != nil {
		t.Fatal(err)
	}
	h.sim.SlowMigrations(time.Hour)
	res, _, err := h.runWith(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator), executor.StepOptions{Workloads: planner.Workloads{Policy: planner.WorkloadsReportOnly}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return h.sim.Count(simulator.MigrationStarted) == 1 }, "the migration runs")
	before := h.objectVersions(t)
	_, err = h.run(t, upgrade("v1.8.4", "v1.9.0", planner.MethodOperator), time.Minute)
	if fault.ReasonOf(err) != executor.ReasonMigrationsInFlight || fault.Stalls(err) || !strings.Contains(err.Error(), "default/vma") {
		t.Fatalf("a hop under a running migration: %v, want a transient MigrationsInFlight naming default/vma", err)
	}
	d, _ := planner.ParseDesired([]byte("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n  version: v1.8.4\n  kubevirtConfig:\n    configuration:\n      evictionStrategy: LiveMigrate\n"))
	_, _, err = h.runWith(t, planner.Step{Type: planner.StepConfigure, From: "v1.8.4", To: "v1.8.4"}, executor.StepOptions{Config: d.KubeVirtConfig})
	if fault.ReasonOf(err) != executor.ReasonMigrationsInFlight {
		t.Fatalf("Configure under a running migration: %v", err)
	}
	if _, err := h.exec.RestoreCR(context.Background(), "v1.8.4", "", ""); fault.ReasonOf(err) != executor.ReasonMigrationsInFlight {
		t.Fatalf("drift correction under a running migration: %v", err)
	}
	if after := h.objectVersions(t); after != before {
		t.Errorf("objects changed under a running migration:\nbefore %v\nafter  %v", before, after)
	}
	if res.Workloads.Outdated.Count+res.Workloads.Moving.Count != 1 {
		t.Errorf("the reported hop: %+v", res.Workloads)
	}
	h.sim.SlowMigrations(0)
	h.noViolations(t)
}

// TestAShutDownTheDesiredFileAcceptedIsReported: Evict with no eviction
// strategy shuts down a VM that runs Manual; accepted, the hop succeeds
// and names it; not accepted, the hop fails naming it.
func TestAShutDownTheDesiredFileAcceptedIsReported(t *testing.T) {
	for _, accepted := range []bool{true, false} {
		h := start(t, harnessOptions{})
		h.install(t, "v1.7.4", planner.MethodOperator)
		h.patchCR(t, `{"spec":{"workloadUpdateStrategy":{"workloadUpdateMethods":["Evict"],"batchEvictionInterval":"1s"}}}`)
		if _, err := h.sim.CreateVM(context.Background(), "default", "manual", simulator.RunStrategyManual); err != nil {
			t.Fatal(err)
		}
		if _, err := h.sim.CreateVM(context.Background(), "default", "always", simulator.RunStrategyAlways); err != nil {
			t.Fatal(err)
		}
		w := planner.Workloads{Policy: planner.WorkloadsWait}
		if accepted {
			w.Unmovable = planner.UnmovableAccept
		}
		res, _, err := h.runWith(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator), executor.StepOptions{Workloads: w})
		switch {
		case accepted && err != nil:
			t.Fatalf("accepted: %v", err)
		case accepted:
			if !slices.Equal(res.Workloads.ShutDown.Names, []string{"default/manual"}) || !slices.Equal(res.Workloads.Restarted.Names, []string{"default/always"}) ||
				!strings.Contains(res.Workloads.Note, "shut down by the update and stay off: default/manual") {
				t.Errorf("accepted: %+v", res.Workloads)
			}
		case fault.ReasonOf(err) != executor.ReasonWorkloadDisrupted || !strings.Contains(err.Error(), "default/manual (shut down)"):
			t.Errorf("not accepted: %v, want WorkloadDisrupted naming default/manual", err)
		}
	}
}

// TestAWorkloadWaitEndsWhenNothingMoves: a migration that keeps failing
// is retried by KubeVirt; the wait fails once no VMI moved for
// progressTimeout, not after a flat hour.
func TestAWorkloadWaitEndsWhenNothingMoves(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodOperator)
	if _, err := h.sim.CreateVMI(context.Background(), "default", "stuck"); err != nil {
		t.Fatal(err)
	}
	h.sim.FailMigrations("default/stuck")
	_, _, err := h.runWith(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator), executor.StepOptions{
		Workloads: planner.Workloads{Policy: planner.WorkloadsWait, ProgressTimeout: 3 * time.Second}})
	if fault.ReasonOf(err) != executor.ReasonWorkloadsOutdated || !strings.Contains(err.Error(), "no VMI moved to v1.8.4's virt-launcher for") {
		t.Fatalf("a wait with no progress: %v", err)
	}
}

// TestUnmovableRestartRestartsWhatKubeVirtLeaves: under LiveMigrate a VM
// whose disk cannot migrate stays on the old virt-launcher; with
// spec.workloads.unmovable: Restart the hop deletes its VMI (by UID), its
// VM (run strategy Always) starts it again on the new virt-launcher, and
// the report names it restarted. Without the policy it stays behind.
func TestUnmovableRestartRestartsWhatKubeVirtLeaves(t *testing.T) {
	for _, restart := range []bool{true, false} {
		h := start(t, harnessOptions{})
		h.install(t, "v1.7.4", planner.MethodOperator)
		ctx := context.Background()
		before, err := h.sim.CreateVM(ctx, "default", "db", simulator.RunStrategyAlways, simulator.NotMigratable("DisksNotLiveMigratable"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.sim.CreateVMI(ctx, "default", "web"); err != nil {
			t.Fatal(err)
		}
		w := planner.Workloads{Policy: planner.WorkloadsWait, Unmovable: planner.UnmovableAccept}
		if restart {
			w.Unmovable = planner.UnmovableRestart
		}
		res, said, err := h.runWith(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator), executor.StepOptions{Workloads: w})
		if err != nil {
			t.Fatalf("restart %v: %v", restart, err)
		}
		o := h.observe(t)
		if err := h.exec.ObserveWorkloads(ctx, o); err != nil {
			t.Fatal(err)
		}
		var db executor.VMI
		for _, v := range o.Workloads.VMIs {
			if v.Name == "db" {
				db = v
			}
		}
		switch {
		case restart && (!slices.Equal(res.Workloads.Restarted.Names, []string{"default/db"}) || res.Workloads.Moved != 1 ||
			!saidAny(said, "restarting 1 VMIs KubeVirt leaves on a virt-launcher older than v1.8.4") || h.sim.Count(simulator.VMIRestarted) != 1):
			t.Errorf("Restart: %+v, progress %q, %d restarts recorded", res.Workloads, said, h.sim.Count(simulator.VMIRestarted))
		case restart && (string(before) == db.UID || !strings.HasSuffix(db.Launcher, ":v1.8.4")):
			t.Errorf("Restart: db is %+v, want a new VMI on the v1.8.4 virt-launcher", db)
		case !restart && (!slices.Equal(res.Workloads.CannotMove.Names, []string{"default/db"}) || h.sim.Count(simulator.VMIRestarted) != 0 || db.UID != string(before)):
			t.Errorf("Accept: %+v, db %+v; want db left on the old launcher, untouched", res.Workloads, db)
		}
	}
}
