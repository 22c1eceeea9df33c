package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/release"
)

// How often the workload wait looks at the VMIs: every 2s, every 10s with
// more than bigCluster of them (each look lists them all, in pages).
const (
	workloadPoll    = 2 * time.Second
	bigClusterPoll  = 10 * time.Second
	bigCluster      = 1000
	maxNamed        = 20
	perMigrationEst = 5 * time.Minute // a generous upper bound for one live migration
)

// WorkloadGroup counts VMIs in one situation and names the first maxNamed.
type WorkloadGroup struct {
	Count int      `json:"count"`
	Names []string `json:"names,omitempty"`
}

func (g *WorkloadGroup) add(key string) {
	g.Count++
	if len(g.Names) < maxNamed {
		g.Names = append(g.Names, key)
	}
}

func (g WorkloadGroup) String() string { return nameSome(g.Names, g.Count) }

// WorkloadReport is how a hop's VMIs fared (docs/kubevirt.md, "Workload
// updates"): moved to the new virt-launcher, moving, still outdated (waited
// for), and the ones that will not move, were shut down or restarted — as
// the desired file accepted — or were disrupted although it did not.
type WorkloadReport struct {
	RunningBefore int
	RunningNow    int
	Moved         int
	Moving        WorkloadGroup
	Outdated      WorkloadGroup
	CannotMove    WorkloadGroup
	ShutDown      WorkloadGroup
	Restarted     WorkloadGroup
	Disrupted     WorkloadGroup
	Note          string
	// restart: VMIs KubeVirt leaves on the old virt-launcher that kvgitops
	// restarts (spec.workloads.unmovable: Restart).
	restart []VMI
}

// notMoved are the VMIs waited for: outdated or moving.
func (r WorkloadReport) notMoved() WorkloadGroup {
	g := WorkloadGroup{Count: r.Outdated.Count + r.Moving.Count}
	g.Names = append(slices.Clone(r.Outdated.Names), r.Moving.Names...)
	slices.Sort(g.Names)
	if len(g.Names) > maxNamed {
		g.Names = g.Names[:maxNamed]
	}
	return g
}

// settled: nothing left to wait for.
func (r WorkloadReport) settled() bool { return r.Outdated.Count == 0 && r.Moving.Count == 0 }

// progress is what the wait measures progress on: a VMI that settled.
func (r WorkloadReport) progress() int {
	return r.Moved + r.ShutDown.Count + r.Restarted.Count + r.CannotMove.Count
}

// isOutdated: labelled by virt-controller, or (tagged images) naming another
// tag than to. The label alone lags behind the hop by one updater pass.
func isOutdated(v VMI, to string) bool {
	ref := release.ParseImage(v.Launcher)
	return v.Outdated || v.Launcher != "" && ref.Digest == "" && ref.Tag != to
}

// outdated lists the running VMIs that do not run to's virt-launcher.
func outdated(vmis []VMI, to string) []string {
	var out []string
	for _, v := range vmis {
		if v.Running() && isOutdated(v, to) {
			out = append(out, v.key())
		}
	}
	return out
}

// judge classifies the VMIs against the ones that ran before the hop and
// what the forecast says each will do.
type judge struct {
	to       string
	settings planner.WorkloadSettings
	policy   planner.Workloads
	before   map[string]VMI // running before the hop, by namespace/name
}

func newJudge(to string, settings planner.WorkloadSettings, policy planner.Workloads, baseline []VMI) judge {
	j := judge{to: to, settings: settings, policy: policy, before: map[string]VMI{}}
	for _, v := range baseline {
		if v.Running() {
			j.before[v.key()] = v
		}
	}
	return j
}

// fate is what the hop does to v as the desired file has it
// (planner.PlanVMI), and whether the file accepts it.
func (j judge) fate(v VMI) (planner.Fate, bool) {
	fate, _, ok := planner.PlanVMI(v.plannerVMI(), j.settings, j.to, j.policy)
	return fate, ok
}

func (j judge) classify(w *Workloads) WorkloadReport {
	r := WorkloadReport{RunningBefore: len(j.before)}
	inFlight := map[string]bool{}
	for _, k := range w.InFlight() {
		inFlight[k] = true
	}
	seen := map[string]bool{}
	for _, v := range w.VMIs {
		if !v.Running() {
			continue
		}
		r.RunningNow++
		b, was := j.before[v.key()]
		seen[v.key()] = was && b.UID == v.UID
		switch {
		case was && b.UID != v.UID:
			j.restarted(&r, b)
		case !isOutdated(v, j.to):
			if was {
				r.Moved++
			}
		case v.Migrating || inFlight[v.key()]:
			r.Moving.add(v.key())
		default:
			j.waiting(&r, v)
		}
	}
	for key, b := range j.before {
		if _, ok := seen[key]; !ok {
			j.gone(&r, b)
		}
	}
	sortGroups(&r)
	return r
}

// restarted: b's VMI came back as a new one.
func (j judge) restarted(r *WorkloadReport, b VMI) {
	if fate, ok := j.fate(b); fate == planner.FateRestart && ok {
		r.Restarted.add(b.key())
		return
	}
	r.Disrupted.add(b.key() + " (restarted)")
}

// waiting: v runs on an older virt-launcher and no migration moves it yet.
func (j judge) waiting(r *WorkloadReport, v VMI) {
	fate, _ := j.fate(v)
	switch kube, _ := planner.ForecastVMI(v.plannerVMI(), j.settings, j.to); {
	case fate == planner.FateStays:
		r.CannotMove.add(v.key())
		return
	case kube == planner.FateStays: // KubeVirt leaves it; kvgitops restarts it
		r.restart = append(r.restart, v)
	}
	r.Outdated.add(v.key()) // migrated, evicted or restarted soon
}

// gone: b no longer runs under its UID.
func (j judge) gone(r *WorkloadReport, b VMI) {
	switch fate, ok := j.fate(b); {
	case fate == planner.FateShutDown && ok:
		r.ShutDown.add(b.key())
	case fate == planner.FateRestart && ok:
		r.Outdated.add(b.key()) // shut down; its VM starts it again
	default:
		r.Disrupted.add(b.key() + " (shut down)")
	}
}

func sortGroups(r *WorkloadReport) {
	for _, g := range []*WorkloadGroup{&r.Moving, &r.Outdated, &r.CannotMove, &r.ShutDown, &r.Restarted, &r.Disrupted} {
		slices.Sort(g.Names)
	}
}

// LeftBehind judges the running VMIs (ObserveWorkloads read them) as a
// hop's wait to to would, restarts unknown: the report, and whether the
// policy waits for them. A pass that finds KubeVirt at to after a hop
// whose wait did not finish (it failed, or the agent restarted in it)
// counts what is still not moved (notMoved: outdated or moving).
func (o *Observation) LeftBehind(to string, policy planner.Workloads) (WorkloadReport, bool) {
	if o.Workloads == nil || o.KubeVirt == nil {
		return WorkloadReport{}, false
	}
	s := o.KubeVirt.settings()
	return newJudge(to, s, policy, o.Workloads.VMIs).classify(o.Workloads), waits(policy.Policy, s.Methods)
}

// waits: the policy waits for the VMIs to move (Auto, the default: when
// the CR has update methods).
func waits(p planner.WorkloadPolicy, methods []string) bool {
	return p == planner.WorkloadsWait || (p == planner.WorkloadsAuto || p == "") && len(methods) > 0
}

// NotMoved counts the VMIs a wait waits for: outdated or moving.
func (r WorkloadReport) NotMoved() int { return r.Outdated.Count + r.Moving.Count }

// waitWorkloads makes a hop finish for running VMs too (docs/kubevirt.md,
// "Workload updates"): with policy Wait (Auto when the CR has
// workloadUpdateMethods) it waits until every VMI that KubeVirt moves has
// moved, failing when none moved for spec.workloads.progressTimeout or the
// whole wait outlasts its cap (spec.workloads.timeout, else sized from the
// count and the throttles); with ReportOnly it reports and goes on. A VMI
// shut down or restarted that the desired file did not accept fails the
// hop at once, by name.
func (e *Executor) waitWorkloads(ctx context.Context, to string, kv *KubeVirtState, baseline []VMI, opts StepOptions, say progress, res *StepResult) error {
	j := newJudge(to, kv.settings(), opts.Workloads, baseline)
	wait := waits(opts.Workloads.Policy, kv.WorkloadUpdateMethods)
	w, err := e.readWorkloads(ctx)
	if err != nil {
		return err
	}
	res.Workloads = j.classify(w)
	limit := opts.Workloads.Timeout
	if limit == 0 {
		limit = sizedTimeout(res.Workloads, j.settings)
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	ws := &workloadWait{e: e, j: j, opts: opts, say: say, res: res, lastProgress: time.Now(), progress: -1, milestoneAt: -1, restarted: map[string]bool{}}
	for {
		if err := ws.restartLeftBehind(ctx); err != nil {
			return err
		}
		if stop, err := ws.judged(wait); stop {
			return err
		}
		if sleep(ctx, ws.poll()) != nil {
			break
		}
		if w, err = e.readWorkloads(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		res.Workloads = j.classify(w)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		left := res.Workloads.notMoved()
		return fault.Stalled(ReasonWorkloadsOutdated, nil, "%d VMIs still run a virt-launcher older than %s after %s (spec.workloads.timeout): %s",
			left.Count, to, limit, left)
	}
	return ctx.Err()
}

func (e *Executor) readWorkloads(ctx context.Context) (*Workloads, error) {
	ctx1, cancel := e.call(ctx)
	defer cancel()
	return e.observeWorkloads(ctx1)
}

// workloadWait is one hop's wait for its VMIs.
type workloadWait struct {
	e             *Executor
	j             judge
	opts          StepOptions
	say           progress
	res           *StepResult
	last          string
	lastProgress  time.Time
	progress      int
	lastMilestone time.Time
	milestoneAt   int
	restarted     map[string]bool // VMI UIDs kvgitops deleted for their VM to start again
}

func (ws *workloadWait) poll() time.Duration {
	if ws.res.Workloads.RunningNow > bigCluster {
		return bigClusterPoll
	}
	return workloadPoll
}

// judged decides whether the wait ends after a look at the VMIs.
func (ws *workloadWait) judged(wait bool) (bool, error) {
	r := &ws.res.Workloads
	to := ws.j.to
	switch {
	case r.Disrupted.Count > 0:
		return true, fault.Stalled(ReasonWorkloadDisrupted, nil, "VMIs disrupted by the hop to %s (not accepted by spec.workloads): %s", to, r.Disrupted)
	case r.settled():
		r.Note = ws.note()
		return true, nil
	case !wait:
		r.Note = fmt.Sprintf("%d VMIs run a virt-launcher older than %s; %s", r.Outdated.Count+r.Moving.Count, to, notWaited(ws.opts.Workloads.Policy, ws.j.settings))
		ws.say.say("%s", r.Note)
		return true, nil
	}
	if p := r.progress(); p > ws.progress {
		ws.progress, ws.lastProgress = p, time.Now()
	}
	if stuck := time.Since(ws.lastProgress); stuck > ws.opts.Workloads.ProgressTimeout {
		left := r.notMoved()
		return true, fault.Stalled(ReasonWorkloadsOutdated, nil, "no VMI moved to %s's virt-launcher for %s (spec.workloads.progressTimeout); %d still outdated: %s",
			to, stuck.Round(time.Second), left.Count, left)
	}
	msg := fmt.Sprintf("waiting for VMIs to move to the %s virt-launcher (%s): %d moved, %d moving, %d outdated", to, strings.Join(ws.j.settings.Methods, ", "), r.Moved, r.Moving.Count, r.Outdated.Count)
	if msg != ws.last {
		ws.say.say("%s", msg)
		ws.last = msg
	}
	// A status commit when the wait starts, then at most one a minute
	// while the counts move.
	if n := r.progress(); ws.opts.Milestone != nil && n != ws.milestoneAt && time.Since(ws.lastMilestone) >= time.Minute {
		ws.opts.Milestone(msg, *r)
		ws.lastMilestone, ws.milestoneAt = time.Now(), n
	}
	return false, nil
}

// note says what the settled wait leaves behind, if anything.
func (ws *workloadWait) note() string {
	r := ws.res.Workloads
	var parts []string
	if r.ShutDown.Count > 0 {
		parts = append(parts, fmt.Sprintf("%d VMIs were shut down by the update and stay off: %s", r.ShutDown.Count, r.ShutDown))
	}
	if r.Restarted.Count > 0 {
		parts = append(parts, fmt.Sprintf("%d VMIs were shut down and started again by their VM: %s", r.Restarted.Count, r.Restarted))
	}
	if r.CannotMove.Count > 0 {
		parts = append(parts, fmt.Sprintf("%d VMIs stay on a virt-launcher older than %s until restarted (%s): %s", r.CannotMove.Count, ws.j.to, whyStays(ws.j.settings), r.CannotMove))
	}
	return strings.Join(parts, "; ")
}

func whyStays(s planner.WorkloadSettings) string {
	if len(s.Methods) == 0 {
		return "the KubeVirt CR has no spec.workloadUpdateStrategy.workloadUpdateMethods"
	}
	return "KubeVirt cannot move them with " + strings.Join(s.Methods, ", ")
}

func notWaited(p planner.WorkloadPolicy, s planner.WorkloadSettings) string {
	if len(s.Methods) == 0 {
		return "they stay so until restarted: the KubeVirt CR has no spec.workloadUpdateStrategy.workloadUpdateMethods"
	}
	return fmt.Sprintf("virt-controller moves them (%s), not waited for (spec.workloads.policy %s)", strings.Join(s.Methods, ", "), p)
}

// sizedTimeout caps a wait by what KubeVirt's throttles allow: evictions go
// batchEvictionSize per batchEvictionInterval, live migrations
// parallelMigrationsPerCluster at a time (each given perMigrationEst);
// twice that, and never under planner.MinWorkloadTimeout.
func sizedTimeout(r WorkloadReport, s planner.WorkloadSettings) time.Duration {
	n := r.Outdated.Count + r.Moving.Count
	size, interval, parallel := s.BatchEvictionSize, s.BatchEvictionInterval, s.ParallelMigrationsPerCluster
	if size <= 0 {
		size = 10
	}
	if interval <= 0 {
		interval = time.Minute
	}
	if parallel <= 0 {
		parallel = 5
	}
	est := time.Duration((n+size-1)/size)*interval + time.Duration((n+parallel-1)/parallel)*perMigrationEst
	return max(planner.MinWorkloadTimeout, 2*est)
}

// listSome names up to ten items.
func listSome(l []string) string { return nameSome(l, len(l)) }

// nameSome names up to ten of l (total items in all) and says how many
// more there are.
func nameSome(l []string, total int) string {
	shown := l
	if len(shown) > 10 {
		shown = shown[:10]
	}
	s := strings.Join(shown, ", ")
	if total > len(shown) {
		s += fmt.Sprintf(" and %d more", total-len(shown))
	}
	return s
}

// quiet refuses to change KubeVirt while a live migration is in flight: a
// CR change or a new target under one re-rolls virt-handler and can kill
// its guest (kubevirt#18720, #18396, #18670). Transient: the next pass
// tries again.
func (e *Executor) quiet(ctx context.Context) error {
	w, err := e.readWorkloads(ctx)
	if err != nil {
		return err
	}
	if f := w.InFlight(); len(f) > 0 {
		return inFlight(f)
	}
	return nil
}
