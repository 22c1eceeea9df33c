package planner

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// VMI is what planning knows of one running VirtualMachineInstance.
type VMI struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"-"`
	// Migratable is its LiveMigratable condition; NotMigratableReason the
	// condition's reason when it is False (DisksNotLiveMigratable, …).
	Migratable          bool   `json:"-"`
	NotMigratableReason string `json:"-"`
	// EvictionStrategy is its own spec.evictionStrategy ("" = the
	// cluster's).
	EvictionStrategy string `json:"-"`
	// RunStrategy is that of the VM that owns it; "" for a standalone VMI.
	RunStrategy string `json:"-"`
}

// Key is namespace/name.
func (v VMI) Key() string { return v.Namespace + "/" + v.Name }

// WorkloadSettings are how KubeVirt moves VMIs after a hop: the KubeVirt
// CR's (or those the desired kubevirtConfig gives it first).
type WorkloadSettings struct {
	// Methods is spec.workloadUpdateStrategy.workloadUpdateMethods.
	Methods []string
	// EvictionStrategy is spec.configuration.evictionStrategy ("" = none).
	EvictionStrategy string
	// BatchEvictionSize and BatchEvictionInterval pace evictions (0: the
	// defaults, 10 per minute).
	BatchEvictionSize     int
	BatchEvictionInterval time.Duration
	// ParallelMigrationsPerCluster and ParallelOutboundMigrationsPerNode
	// throttle live migrations (0: the defaults, 5 and 2).
	ParallelMigrationsPerCluster      int
	ParallelOutboundMigrationsPerNode int
}

// Fate is what KubeVirt does to a running VMI after a hop moves its
// virt-launcher (docs/kubevirt.md, "Workload updates").
type Fate string

// Fates.
const (
	// FateLiveMigrate: moved to the new virt-launcher by live migration
	// (the workload updater's, or an eviction turned into one); the guest
	// keeps running, same VMI.
	FateLiveMigrate Fate = "LiveMigrate"
	// FateRestart: evicted, the guest shut down, and started again by its
	// VM (run strategy Always or RerunOnFailure) as a new VMI.
	FateRestart Fate = "Restart"
	// FateShutDown: evicted and the guest shut down; nothing starts it
	// again (a standalone VMI, or a VM that runs Manual).
	FateShutDown Fate = "ShutDown"
	// FateStays: nothing moves it; it keeps running on the old
	// virt-launcher until someone restarts it.
	FateStays Fate = "StaysOutdated"
)

// Moves reports whether the guest keeps running and reaches the new
// virt-launcher: the only fate that needs nobody's consent.
func (f Fate) Moves() bool { return f == FateLiveMigrate }

// WorkloadUpdaterSince is the first release with virt-controller's workload
// updater.
const WorkloadUpdaterSince = "v0.39.0-alpha.0"

// ForecastVMI says what a hop to target does to v under s, and why:
// virt-controller's workload updater picks LiveMigrate for a migratable
// VMI, else Evict; virt-api turns an eviction into a live migration
// (eviction strategy LiveMigrate, LiveMigrateIfPossible when migratable),
// denies it for good (LiveMigrate on a VMI that cannot migrate), only marks
// it (External), or lets the launcher pod die (None).
func ForecastVMI(v VMI, s WorkloadSettings, target string) (Fate, string) {
	if !TagAtLeast(target, WorkloadUpdaterSince) {
		return FateStays, fmt.Sprintf("KubeVirt %s has no workload updater (from v0.39): VMIs stay on their virt-launcher until restarted", target)
	}
	migrate, evict := slices.Contains(s.Methods, "LiveMigrate"), slices.Contains(s.Methods, "Evict")
	notMigratable := "not live-migratable (" + orUnknown(v.NotMigratableReason) + ")"
	switch {
	case migrate && v.Migratable:
		return FateLiveMigrate, "live-migrated by the workload updater"
	case !evict && len(s.Methods) == 0:
		return FateStays, "the KubeVirt CR has no workloadUpdateMethods"
	case !evict:
		return FateStays, notMigratable + " and workloadUpdateMethods has no Evict"
	}
	strategy := v.EvictionStrategy
	if strategy == "" {
		strategy = s.EvictionStrategy
	}
	switch {
	case strategy == "LiveMigrate" && v.Migratable, strategy == "LiveMigrateIfPossible" && v.Migratable:
		return FateLiveMigrate, "evicted, and the eviction live-migrates it (eviction strategy " + strategy + ")"
	case strategy == "LiveMigrate":
		return FateStays, notMigratable + ": virt-api denies its eviction (eviction strategy LiveMigrate)"
	case strategy == "External":
		return FateStays, "its eviction only marks it for an external controller (eviction strategy External)"
	}
	return shutDownFate(v, strategy, notMigratable)
}

// shutDownFate: an eviction that lets the launcher pod die shuts the guest
// down; only a VM with a restarting run strategy starts it again.
func shutDownFate(v VMI, strategy, notMigratable string) (Fate, string) {
	why := "evicted with eviction strategy " + strategyName(strategy)
	if strategy == "LiveMigrateIfPossible" {
		why = "evicted, " + notMigratable + " (eviction strategy LiveMigrateIfPossible)"
	}
	switch {
	case restarting(v.RunStrategy):
		return FateRestart, why + ": the guest is shut down and its VM (run strategy " + v.RunStrategy + ") starts it again"
	case v.RunStrategy == "":
		return FateShutDown, why + ": the guest is shut down and, a standalone VMI, stays off"
	}
	return FateShutDown, why + ": the guest is shut down and its VM (run strategy " + v.RunStrategy + ") leaves it off"
}

// restarting: a VM run strategy that starts its VMI again when it ends.
func restarting(runStrategy string) bool {
	return runStrategy == "Always" || runStrategy == "RerunOnFailure"
}

// PlanVMI is a VMI's fate in a hop as the desired file has it: KubeVirt's
// (ForecastVMI), but a VMI left on its old virt-launcher is restarted by
// kvgitops under spec.workloads.unmovable: Restart when its VM starts it
// again; and whether the desired file accepts that fate.
func PlanVMI(v VMI, s WorkloadSettings, target string, w Workloads) (fate Fate, why string, accepted bool) {
	fate, why = ForecastVMI(v, s, target)
	switch {
	case fate.Moves():
		return fate, why, true
	case fate == FateStays && w.Restarts(v):
		return FateRestart, why + "; kvgitops restarts it after the hop (spec.workloads.unmovable: Restart) and its VM (run strategy " + v.RunStrategy + ") starts it on the new virt-launcher", true
	case fate == FateRestart && w.Unmovable == UnmovableRestart:
		return fate, why, true
	}
	return fate, why, w.Accepts(v)
}

func orUnknown(s string) string {
	if s == "" {
		return "reason unknown"
	}
	return s
}

func strategyName(s string) string {
	if s == "" {
		return "None"
	}
	return s
}

// Forecast is the fate of one VMI in a hop.
type Forecast struct {
	VMI      string `json:"vmi" yaml:"vmi"`
	Fate     Fate   `json:"fate" yaml:"fate"`
	Why      string `json:"why" yaml:"why"`
	Accepted bool   `json:"accepted,omitempty" yaml:"accepted,omitempty"`
}

// WorkloadForecast is what a hop does to the running VMIs: counted per
// fate, and the ones that do not simply live-migrate named.
type WorkloadForecast struct {
	Counts map[Fate]int `json:"counts" yaml:"counts"`
	// Unmoved are the VMIs whose fate is not LiveMigrate, sorted, at most
	// MaxForecastNames of them.
	Unmoved []Forecast `json:"unmoved,omitempty" yaml:"unmoved,omitempty"`
	// Refused counts the unmoved VMIs the desired file does not accept.
	Refused int `json:"refused" yaml:"refused"`
}

// MaxForecastNames bounds the VMIs a forecast names, whatever the count.
const MaxForecastNames = 20

// ForecastWorkloads forecasts every VMI for a hop to target (PlanVMI),
// marking those the desired file accepts.
func ForecastWorkloads(vmis []VMI, s WorkloadSettings, target string, w Workloads) WorkloadForecast {
	f := WorkloadForecast{Counts: map[Fate]int{}}
	var refusedFirst, acceptedRest []Forecast
	for _, v := range vmis {
		fate, why, accepted := PlanVMI(v, s, target, w)
		f.Counts[fate]++
		if fate.Moves() {
			continue
		}
		fc := Forecast{VMI: v.Key(), Fate: fate, Why: why, Accepted: accepted}
		if fc.Accepted {
			acceptedRest = append(acceptedRest, fc)
		} else {
			f.Refused++
			refusedFirst = append(refusedFirst, fc)
		}
	}
	byKey := func(a, b Forecast) int { return strings.Compare(a.VMI, b.VMI) }
	slices.SortFunc(refusedFirst, byKey)
	slices.SortFunc(acceptedRest, byKey)
	f.Unmoved = append(refusedFirst, acceptedRest...)
	if len(f.Unmoved) > MaxForecastNames {
		f.Unmoved = f.Unmoved[:MaxForecastNames]
	}
	return f
}

// workloadCheck is the preflight's verdict on a hop's forecast: refused
// while a VMI that will not live-migrate is not accepted (spec.workloads).
func workloadCheck(i int, s Step, o Observed, settings WorkloadSettings, w Workloads) Check {
	c := Check{Step: i, Name: CheckWorkloads, Result: CheckPass}
	if !o.WorkloadsKnown {
		c.Result, c.Message = CheckNotChecked, "not checked: the cluster's VMIs are unknown (plan with --kubeconfig to see what each will do)"
		return c
	}
	f := ForecastWorkloads(o.VMIs, settings, s.To, w)
	unmoved := len(o.VMIs) - f.Counts[FateLiveMigrate]
	switch {
	case unmoved == 0:
		c.Message = fmt.Sprintf("%d running VMIs, every one live-migrates to %s's virt-launcher", len(o.VMIs), s.To)
	case f.Refused > 0:
		c.Result, c.Reason = CheckRefuse, ReasonWorkloadsCannotMove
		c.Message = fmt.Sprintf("%d of %d running VMIs will not live-migrate to %s's virt-launcher (%s): %s; accept them by name or label in spec.workloads.accept (or set spec.workloads.unmovable: Accept, or Restart for VMs that start again), make them migratable, or change workloadUpdateMethods",
			f.Refused, len(o.VMIs), s.To, fateCounts(f.Counts), forecastNames(f.Unmoved, true, f.Refused))
	default:
		c.Result = CheckWarn
		c.Message = fmt.Sprintf("%d of %d running VMIs will not live-migrate to %s's virt-launcher (%s), accepted by spec.workloads: %s",
			unmoved, len(o.VMIs), s.To, fateCounts(f.Counts), forecastNames(f.Unmoved, false, unmoved))
	}
	return c
}

func fateCounts(c map[Fate]int) string {
	var parts []string
	for _, f := range []Fate{FateLiveMigrate, FateRestart, FateShutDown, FateStays} {
		if c[f] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", f, c[f]))
		}
	}
	return strings.Join(parts, ", ")
}

// forecastNames names up to five of total forecasts (the refused ones only
// when refused is set) with their fate and why.
func forecastNames(fs []Forecast, refused bool, total int) string {
	var parts []string
	for _, f := range fs {
		if refused && f.Accepted || len(parts) == 5 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s (%s)", f.VMI, f.Fate, f.Why))
	}
	if total > len(parts) {
		parts = append(parts, fmt.Sprintf("and %d more", total-len(parts)))
	}
	return strings.Join(parts, "; ")
}
