package planner_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/planner"
)

// TestForecastVMI: the fate of each kind of VMI, as virt-controller's
// workload updater and virt-api's eviction admitter decide it
// (docs/kubevirt.md, "Workload updates").
func TestForecastVMI(t *testing.T) {
	migratable := planner.VMI{Namespace: "ns", Name: "a", Migratable: true}
	rwo := planner.VMI{Namespace: "ns", Name: "b", NotMigratableReason: "DisksNotLiveMigratable"}
	vm := func(v planner.VMI, run string) planner.VMI { v.RunStrategy = run; return v }
	strat := func(v planner.VMI, s string) planner.VMI { v.EvictionStrategy = s; return v }
	live, evict, both := []string{"LiveMigrate"}, []string{"Evict"}, []string{"LiveMigrate", "Evict"}
	for _, tt := range []struct {
		vmi     planner.VMI
		methods []string
		cluster string // spec.configuration.evictionStrategy
		target  string
		fate    planner.Fate
		why     string
	}{
		{migratable, live, "", "v1.8.4", planner.FateLiveMigrate, "live-migrated"},
		{rwo, live, "", "v1.8.4", planner.FateStays, "not live-migratable (DisksNotLiveMigratable) and workloadUpdateMethods has no Evict"},
		{migratable, nil, "", "v1.8.4", planner.FateStays, "no workloadUpdateMethods"},
		{migratable, live, "", "v0.38.1", planner.FateStays, "no workload updater"},
		{rwo, both, "", "v1.8.4", planner.FateShutDown, "a standalone VMI, stays off"},
		{vm(rwo, "Always"), both, "", "v1.8.4", planner.FateRestart, "starts it again"},
		{vm(rwo, "RerunOnFailure"), evict, "", "v1.8.4", planner.FateRestart, "starts it again"},
		{vm(rwo, "Manual"), evict, "", "v1.8.4", planner.FateShutDown, "(run strategy Manual) leaves it off"},
		{migratable, evict, "LiveMigrate", "v1.8.4", planner.FateLiveMigrate, "eviction live-migrates it"},
		{strat(migratable, "LiveMigrateIfPossible"), evict, "", "v1.8.4", planner.FateLiveMigrate, "eviction live-migrates it"},
		{rwo, evict, "LiveMigrate", "v1.8.4", planner.FateStays, "virt-api denies its eviction"},
		{strat(rwo, "LiveMigrateIfPossible"), evict, "LiveMigrate", "v1.8.4", planner.FateShutDown, "LiveMigrateIfPossible"},
		{migratable, evict, "External", "v1.8.4", planner.FateStays, "external controller"},
		{strat(migratable, "None"), evict, "LiveMigrate", "v1.8.4", planner.FateShutDown, "eviction strategy None"},
	} {
		name := fmt.Sprintf("%s/%v/%s/%s/%s", tt.vmi.Name, tt.methods, tt.cluster, tt.vmi.EvictionStrategy, tt.vmi.RunStrategy)
		fate, why := planner.ForecastVMI(tt.vmi, planner.WorkloadSettings{Methods: tt.methods, EvictionStrategy: tt.cluster}, tt.target)
		if fate != tt.fate || !strings.Contains(why, tt.why) {
			t.Errorf("%s: %s (%s), want %s (…%s…)", name, fate, why, tt.fate, tt.why)
		}
	}
}

// vmis is n migratable VMIs plus the ones given.
func vmis(n int, extra ...planner.VMI) []planner.VMI {
	var out []planner.VMI
	for i := range n {
		out = append(out, planner.VMI{Namespace: "prod", Name: fmt.Sprintf("web-%d", i), Migratable: true})
	}
	return append(out, extra...)
}

func upgradeObserved(v []planner.VMI, methods ...string) planner.Observed {
	return planner.Observed{Installed: "v1.7.4", OperatorVersion: "v1.7.4", Mode: planner.ModeLocked, KubeVirt: true, OperatorPresent: true,
		WorkloadsKnown: true, VMIs: v, WorkloadSettings: planner.WorkloadSettings{Methods: methods}}
}

// TestUnmovableVMIsAreRefusedByName: 10 VMIs of which 2 cannot migrate
// under LiveMigrate: the plan is refused naming both, with the reason from
// their condition; accepted by label they are let through and named.
func TestUnmovableVMIsAreRefusedByName(t *testing.T) {
	gpu := planner.VMI{Namespace: "ml", Name: "trainer", NotMigratableReason: "HostDeviceNotLiveMigratable", Labels: map[string]string{"tier": "batch"}}
	db := planner.VMI{Namespace: "prod", Name: "db-0", NotMigratableReason: "DisksNotLiveMigratable", Labels: map[string]string{"tier": "batch"}}
	o := upgradeObserved(vmis(8, gpu, db), "LiveMigrate")
	_, err := planner.Compute(mustDesired(t, "  version: v1.8.4\n"), o, realCatalog(t))
	var re *planner.RefusalError
	if !errors.As(err, &re) || re.Reason != planner.ReasonWorkloadsCannotMove {
		t.Fatalf("plan with 2 unmovable VMIs: %v, want WorkloadsCannotMove", err)
	}
	for _, want := range []string{"2 of 10 running VMIs will not live-migrate", "ml/trainer StaysOutdated", "HostDeviceNotLiveMigratable", "prod/db-0 StaysOutdated", "DisksNotLiveMigratable"} {
		if !strings.Contains(re.Message, want) {
			t.Errorf("refusal %q lacks %q", re.Message, want)
		}
	}
	if f := re.Forecast; f == nil || f.Counts[planner.FateLiveMigrate] != 8 || f.Counts[planner.FateStays] != 2 || f.Refused != 2 || len(f.Unmoved) != 2 {
		t.Errorf("forecast %+v", re.Forecast)
	}
	for _, spec := range []string{
		"  version: v1.8.4\n  workloads:\n    accept:\n      labels:\n        tier: batch\n",
		"  version: v1.8.4\n  workloads:\n    accept:\n      names: [ml/trainer, prod/db-0]\n",
		"  version: v1.8.4\n  workloads:\n    unmovable: Accept\n",
	} {
		p, err := planner.Compute(mustDesired(t, spec), o, realCatalog(t))
		if err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
		c := checkOf(p.Checks, planner.CheckWorkloads)
		if c.Result != planner.CheckWarn || !strings.Contains(c.Message, "accepted by spec.workloads") || !strings.Contains(c.Message, "ml/trainer") {
			t.Errorf("%q: workloads check %+v", spec, c)
		}
		if p.Forecast == nil || p.Forecast.Refused != 0 || !p.Forecast.Unmoved[0].Accepted {
			t.Errorf("%q: forecast %+v", spec, p.Forecast)
		}
	}
	// Accepting one of two is not enough.
	_, err = planner.Compute(mustDesired(t, "  version: v1.8.4\n  workloads:\n    accept:\n      names: [ml/trainer]\n"), o, realCatalog(t))
	if !errors.As(err, &re) || !strings.Contains(re.Message, "1 of 10") || strings.Contains(re.Message, "ml/trainer StaysOutdated") {
		t.Errorf("one accepted of two: %v", err)
	}
}

// TestUnmovableRestartRestartsOnlyWhatComesBack: under unmovable: Restart a
// VMI left on its old launcher whose VM runs Always is forecast restarted
// by kvgitops and accepted; a standalone one and one whose VM runs Manual
// would stay off, so they are still refused, by name.
func TestUnmovableRestartRestartsOnlyWhatComesBack(t *testing.T) {
	always := planner.VMI{Namespace: "prod", Name: "db-0", NotMigratableReason: "DisksNotLiveMigratable", RunStrategy: "Always"}
	manual := planner.VMI{Namespace: "prod", Name: "db-1", NotMigratableReason: "DisksNotLiveMigratable", RunStrategy: "Manual"}
	alone := planner.VMI{Namespace: "prod", Name: "scratch", NotMigratableReason: "HostDeviceNotLiveMigratable"}
	d := mustDesired(t, "  version: v1.8.4\n  workloads:\n    unmovable: Restart\n")
	p, err := planner.Compute(d, upgradeObserved(vmis(3, always), "LiveMigrate"), realCatalog(t))
	if err != nil {
		t.Fatalf("only a VM that starts again: %v", err)
	}
	if f := p.Forecast; f.Counts[planner.FateRestart] != 1 || f.Refused != 0 || f.Unmoved[0].VMI != "prod/db-0" ||
		!strings.Contains(f.Unmoved[0].Why, "kvgitops restarts it after the hop") {
		t.Errorf("forecast %+v", p.Forecast)
	}
	_, err = planner.Compute(d, upgradeObserved(vmis(3, always, manual, alone), "LiveMigrate"), realCatalog(t))
	var re *planner.RefusalError
	if !errors.As(err, &re) || re.Forecast.Refused != 2 || !strings.Contains(re.Message, "prod/db-1 StaysOutdated") ||
		!strings.Contains(re.Message, "prod/scratch StaysOutdated") || strings.Contains(re.Message, "prod/db-0 ") {
		t.Errorf("a Manual VM and a standalone VMI under Restart: %v", err)
	}
	if _, err := planner.ParseDesired([]byte("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n  version: v1.8.4\n  workloads:\n    unmovable: Reboot\n")); err == nil ||
		!strings.Contains(err.Error(), "spec.workloads.unmovable") || !strings.Contains(err.Error(), "Restart") {
		t.Errorf("unmovable: Reboot: %v", err)
	}
}

// TestAForecastNamesAFewAndCountsAll: 5,000 VMIs that will be shut down:
// the check and the forecast stay small.
func TestAForecastNamesAFewAndCountsAll(t *testing.T) {
	var v []planner.VMI
	for i := range 5000 {
		v = append(v, planner.VMI{Namespace: "batch", Name: fmt.Sprintf("job-%04d", i)})
	}
	_, err := planner.Compute(mustDesired(t, "  version: v1.8.4\n"), upgradeObserved(v, "Evict"), realCatalog(t))
	var re *planner.RefusalError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "5000 of 5000") || !strings.Contains(re.Message, "and 4995 more") || len(re.Message) > 2000 {
		t.Fatalf("refusal (%d bytes): %.300s", len(re.Message), err)
	}
	if len(re.Forecast.Unmoved) != planner.MaxForecastNames || re.Forecast.Counts[planner.FateShutDown] != 5000 {
		t.Errorf("forecast names %d, counts %v", len(re.Forecast.Unmoved), re.Forecast.Counts)
	}
}

// TestTheForecastUsesTheDesiredKubeVirtConfig: Evict set in the desired
// file counts, not the CR's settings it is about to replace.
func TestTheForecastUsesTheDesiredKubeVirtConfig(t *testing.T) {
	o := upgradeObserved(vmis(2, planner.VMI{Namespace: "prod", Name: "db-0", RunStrategy: "Always"}), "LiveMigrate")
	o.KubeVirtSpec = map[string]any{"workloadUpdateStrategy": map[string]any{"workloadUpdateMethods": []any{"LiveMigrate"}}}
	d := mustDesired(t, "  version: v1.8.4\n  workloads:\n    unmovable: Accept\n  kubevirtConfig:\n    workloadUpdateStrategy:\n      workloadUpdateMethods: [LiveMigrate, Evict]\n")
	p, err := planner.Compute(d, o, realCatalog(t))
	if err != nil {
		t.Fatal(err)
	}
	if p.Steps[0].Type != planner.StepConfigure || p.Forecast.Counts[planner.FateRestart] != 1 {
		t.Errorf("steps %v, forecast %+v: want Configure first and db-0 restarted by its VM", p.Steps, p.Forecast)
	}
}

// TestAPlanWaitsForMigrationsInFlight: the first step is marked to wait.
func TestAPlanWaitsForMigrationsInFlight(t *testing.T) {
	o := upgradeObserved(vmis(3), "LiveMigrate")
	o.MigrationsInFlight = []string{"prod/web-1"}
	p, err := planner.Compute(mustDesired(t, "  version: v1.8.4\n"), o, realCatalog(t))
	if err != nil {
		t.Fatal(err)
	}
	if c := checkOf(p.Checks, planner.CheckMigrationsInFlight); c.Result != planner.CheckWarn || !strings.Contains(c.Message, "prod/web-1") {
		t.Errorf("in-flight check %+v", c)
	}
	o.MigrationsInFlight = nil
	q, _ := planner.Compute(mustDesired(t, "  version: v1.8.4\n"), o, realCatalog(t))
	if p.ID != q.ID {
		t.Errorf("plan id %s with a migration in flight, %s without: an approval must survive VMIs coming and going", p.ID, q.ID)
	}
}

func checkOf(cs []planner.Check, name string) planner.Check {
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	return planner.Check{}
}

// TestKubeVirtConfig: the CR's own shape, strictly; the default
// LiveMigrate; what differs from the CR; a Configure step first, and only
// while something differs.
func TestKubeVirtConfig(t *testing.T) {
	d := mustDesired(t, `  version: v1.8.4
  kubevirtConfig:
    workloadUpdateStrategy:
      batchEvictionSize: 20
      batchEvictionInterval: 30s
    configuration:
      developerConfiguration:
        featureGates: [Snapshot, ExpandDisks]
        useEmulation: true
      evictionStrategy: LiveMigrate
      migrations:
        parallelMigrationsPerCluster: 10
        bandwidthPerMigration: 64Mi
        allowPostCopy: false
    infra:
      replicas: 2
      nodePlacement:
        nodeSelector:
          node-role.kubernetes.io/infra: ""
        tolerations:
          - key: infra
            operator: Exists
            effect: NoSchedule
`)
	c := d.KubeVirtConfig
	spec := c.Spec()
	if got := fmt.Sprint(spec["workloadUpdateStrategy"]); got != "map[batchEvictionInterval:30s batchEvictionSize:20 workloadUpdateMethods:[LiveMigrate]]" {
		t.Errorf("workloadUpdateStrategy %s", got)
	}
	s := c.Settings(planner.WorkloadSettings{})
	if s.BatchEvictionSize != 20 || s.BatchEvictionInterval != 30*time.Second || s.ParallelMigrationsPerCluster != 10 || s.EvictionStrategy != "LiveMigrate" {
		t.Errorf("settings %+v", s)
	}
	if g, ok := c.FeatureGates(); !ok || fmt.Sprint(g) != "[Snapshot ExpandDisks]" {
		t.Errorf("gates %v %v", g, ok)
	}
	if got := fmt.Sprint(spec["configuration"].(map[string]any)["developerConfiguration"]); got != "map[featureGates:[Snapshot ExpandDisks] useEmulation:true]" {
		t.Errorf("developerConfiguration %s", got)
	}
	// The CR holds it all (written as the API server gives it back: a
	// duration the way the user or another tool wrote it).
	cr := c.Spec()
	cr["workloadUpdateStrategy"].(map[string]any)["batchEvictionInterval"] = "0h0m30s"
	cr["imageTag"] = "v1.7.4"
	if diff := c.Differences(cr); len(diff) != 0 {
		t.Errorf("differences from an equal CR: %v", diff)
	}
	cr["configuration"].(map[string]any)["migrations"].(map[string]any)["parallelMigrationsPerCluster"] = int64(3)
	diff := c.Differences(cr)
	if len(diff) != 1 || diff[0].Field != "spec.configuration.migrations.parallelMigrationsPerCluster" || diff[0].Observed != "3" || diff[0].Applied != "10" {
		t.Errorf("differences %v", diff)
	}
	o := planner.Observed{Installed: "v1.8.4", OperatorVersion: "v1.8.4", Mode: planner.ModeLocked, KubeVirt: true, OperatorPresent: true, KubeVirtSpec: cr}
	p, err := planner.Compute(d, o, realCatalog(t))
	if err != nil || p.Action != planner.ActionConfigure || len(p.Steps) != 1 || p.Steps[0].Type != planner.StepConfigure {
		t.Fatalf("plan %+v %v: want one Configure step", p, err)
	}
	o.KubeVirtSpec = c.Spec()
	if p, _ := planner.Compute(d, o, realCatalog(t)); p.Action != planner.ActionNone {
		t.Errorf("plan %v with the config in place, want none", p.Action)
	}
}

// TestObsoleteCPUModels: the list replaces KubeVirt's, in the CR's shape,
// compared as a whole (a model added or dropped on the cluster is one
// difference).
func TestObsoleteCPUModels(t *testing.T) {
	d := mustDesired(t, `  version: v1.8.4
  kubevirtConfig:
    configuration:
      obsoleteCPUModels: {"486": true, pentium: true, Opteron_G1: true}
`)
	conf := d.KubeVirtConfig.Spec()["configuration"].(map[string]any)
	if got := fmt.Sprint(conf["obsoleteCPUModels"]); got != "map[486:true Opteron_G1:true pentium:true]" {
		t.Errorf("obsoleteCPUModels %s", got)
	}
	cr := d.KubeVirtConfig.Spec()
	if diff := d.KubeVirtConfig.Differences(cr); len(diff) != 0 {
		t.Errorf("differences from an equal CR: %v", diff)
	}
	cr["configuration"].(map[string]any)["obsoleteCPUModels"] = map[string]any{"486": true, "pentium": true, "Opteron_G1": true, "kvm64": true}
	if diff := d.KubeVirtConfig.Differences(cr); len(diff) != 1 || diff[0].Field != "spec.configuration.obsoleteCPUModels" {
		t.Errorf("differences from a CR with one model more: %v", diff)
	}
}

// TestAnEmptyListIsAnAbsentOne: virt-operator's first pass drops an empty
// list from the CR's spec (KubeVirt's Go types omit it); the agent sees no
// difference to configure (found on the real node: an extra Configure
// plan after every install that asked for no workload update method).
func TestAnEmptyListIsAnAbsentOne(t *testing.T) {
	d := mustDesired(t, `  version: v1.8.4
  kubevirtConfig:
    workloadUpdateStrategy:
      workloadUpdateMethods: []
`)
	cr := map[string]any{"workloadUpdateStrategy": map[string]any{}}
	if diff := d.KubeVirtConfig.Differences(cr); len(diff) != 0 {
		t.Errorf("differences from a CR whose operator dropped the empty list: %v", diff)
	}
	cr["workloadUpdateStrategy"] = map[string]any{"workloadUpdateMethods": []any{"LiveMigrate"}}
	if diff := d.KubeVirtConfig.Differences(cr); len(diff) != 1 || diff[0].Field != "spec.workloadUpdateStrategy.workloadUpdateMethods" {
		t.Errorf("differences from a CR that live-migrates: %v", diff)
	}
}

// TestKubeVirtConfigIsStrict: every unknown key and bad value is an error
// naming the field and the value.
func TestKubeVirtConfigIsStrict(t *testing.T) {
	for _, tt := range []struct{ yaml, field, value string }{
		{"customizeComponents: {}", "spec.kubevirtConfig.customizeComponents", ""},
		{"imageRegistry: evil.example.com", "spec.kubevirtConfig.imageRegistry", ""},
		{"workloadUpdateStrategy:\n      workloadUpdateMethods: [Reboot]", "spec.kubevirtConfig.workloadUpdateStrategy.workloadUpdateMethods[0]", "Reboot"},
		{"workloadUpdateStrategy:\n      workloadUpdateMethods: [Evict, Evict]", "spec.kubevirtConfig.workloadUpdateStrategy.workloadUpdateMethods[1]", "Evict"},
		{"workloadUpdateStrategy:\n      batchEvictionSize: 0", "spec.kubevirtConfig.workloadUpdateStrategy.batchEvictionSize", "0"},
		{"workloadUpdateStrategy:\n      batchEvictionInterval: soon", "spec.kubevirtConfig.workloadUpdateStrategy.batchEvictionInterval", "soon"},
		{"configuration:\n      evictionStrategy: Sometimes", "spec.kubevirtConfig.configuration.evictionStrategy", "Sometimes"},
		{"configuration:\n      developerConfiguration:\n        featureGates: [\"rm -rf\"]", "spec.kubevirtConfig.configuration.developerConfiguration.featureGates[0]", "rm -rf"},
		{"configuration:\n      developerConfiguration:\n        useEmulation: yes", "spec.kubevirtConfig.configuration.developerConfiguration.useEmulation", ""},
		{"configuration:\n      developerConfiguration:\n        memoryOvercommit: 150", "spec.kubevirtConfig.configuration.developerConfiguration.memoryOvercommit", ""},
		{"configuration:\n      migrations:\n        unsafeMigrationOverride: true", "spec.kubevirtConfig.configuration.migrations.unsafeMigrationOverride", ""},
		{"configuration:\n      migrations:\n        bandwidthPerMigration: lots", "spec.kubevirtConfig.configuration.migrations.bandwidthPerMigration", "lots"},
		{"infra:\n      nodePlacement:\n        nodeSelector:\n          \"bad key!\": x", "spec.kubevirtConfig.infra.nodePlacement.nodeSelector", "bad key!"},
		{"workloads:\n      replicas: 3", "spec.kubevirtConfig.workloads.replicas", ""},
	} {
		_, err := planner.ParseDesired([]byte("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n  version: v1.8.4\n  kubevirtConfig:\n    " + tt.yaml + "\n"))
		var fe *planner.FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field || fe.Value != tt.value {
			t.Errorf("%q: %v, want a FieldError on %s (value %q)", tt.yaml, err, tt.field, tt.value)
		}
	}
	for _, tt := range []struct{ yaml, field string }{
		{"accept:\n      names: [not-a-key]", "spec.workloads.accept.names[0]"},
		{"unmovable: Ignore", "spec.workloads.unmovable"},
		{"progressTimeout: 0s", "spec.workloads.progressTimeout"},
	} {
		_, err := planner.ParseDesired([]byte("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n  version: v1.8.4\n  workloads:\n    " + tt.yaml + "\n"))
		var fe *planner.FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%q: %v, want a FieldError on %s", tt.yaml, err, tt.field)
		}
	}
}
