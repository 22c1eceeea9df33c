package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
)

// activePlan is the plan being carried out: the whole plan as first
// computed, with the state of each step. Later passes compute what remains;
// that continues the active plan as long as its steps are a suffix of it.
type activePlan struct {
	plan      planner.Plan
	steps     []StepStatus
	startedAt Timestamp
	ran       bool
}

func newActive(p planner.Plan, now Timestamp) *activePlan {
	act := &activePlan{plan: p, startedAt: now}
	for _, s := range p.Steps {
		act.steps = append(act.steps, StepStatus{Type: string(s.Type), From: s.From, To: s.To, Method: string(s.Method), State: StepPending})
	}
	return act
}

// advanceTo moves the active plan to where p's first step sits and
// returns that index. The steps before it are behind: one that ran
// succeeded; one that never started was not needed any more (e.g. no
// leftovers to clean).
func (act *activePlan) advanceTo(p planner.Plan) int {
	i := len(act.steps) - len(p.Steps)
	for j := 0; j < i; j++ {
		switch act.steps[j].State {
		case StepPending:
			act.steps[j].State = StepSkipped
		case StepRunning, StepFailed:
			act.steps[j].State = StepSucceeded
		case StepSucceeded, StepSkipped, EntryRetrying, EntryInterrupted:
		}
	}
	return i
}

// track makes p (or the plan it continues) the active plan. A plan that does
// not continue the active one supersedes it. After a restart, the plan in the
// agent's memory is adopted when recomputing it from its recorded origin
// gives the same id and p continues it.
func (a *Agent) track(p planner.Plan, obs *executor.Observation) {
	now := NewTimestamp(a.cfg.Clock())
	if act := a.plans.active; act != nil && (act.plan.ID == p.ID || p.Continues(act.plan)) {
		return
	}
	if a.plans.active == nil {
		act := a.adopt(p)
		if a.mem != nil {
			a.mem.Plan = nil // taken up or superseded: what the agent runs now is its memory
		}
		if act != nil {
			a.plans.active = act
			return
		}
	}
	a.supersede("superseded by plan " + p.ID)
	a.plans.active = newActive(p, now)
	a.plans.finished = nil
}

// adopt rebuilds the active plan from the agent's memory, verified by
// recomputation.
func (a *Agent) adopt(p planner.Plan) *activePlan {
	if a.mem == nil || a.mem.Plan == nil || a.mem.Plan.Origin == nil || a.src.desired == nil || a.releases.cat == nil {
		return nil
	}
	prev := a.mem.Plan
	whole, err := planner.Compute(*a.src.desired, prev.Origin.observed(), a.releases.cat)
	if err != nil || whole.ID != prev.ID || (whole.ID != p.ID && !p.Continues(whole)) || len(whole.Steps) != len(prev.Steps) {
		return nil
	}
	act := newActive(whole, NewTimestamp(a.cfg.Clock()))
	for i, s := range prev.Steps {
		if s.Type == act.steps[i].Type && s.To == act.steps[i].To {
			act.steps[i].State, act.steps[i].StartedAt, act.steps[i].FinishedAt = s.State, s.StartedAt, s.FinishedAt
			act.steps[i].Notes, act.steps[i].OperatorFirst = s.Notes, s.OperatorFirst
			act.ran = act.ran || s.State != StepPending
		}
	}
	return act
}

// finish closes the active plan into the history when it ran; the plan
// itself stays in the status file (with each step's notes) until another
// plan starts.
func (a *Agent) finish(result RunResult, message string) {
	act := a.plans.active
	if act != nil && act.ran {
		a.plans.finished = a.planStatus()
	}
	a.plans.active = nil
	if act == nil || !act.ran {
		return
	}
	run := Run{
		PlanID: act.plan.ID, Action: string(act.plan.Action), From: act.plan.From, To: act.plan.To,
		Result: result, Steps: len(act.steps), StartedAt: act.startedAt, FinishedAt: NewTimestamp(a.cfg.Clock()), Message: message,
	}
	for _, s := range act.steps {
		if s.StartedAt != nil && s.StartedAt.Before(run.StartedAt.Time) {
			run.StartedAt = *s.StartedAt
		}
	}
	a.plans.history = append([]Run{run}, a.plans.history...)
	if len(a.plans.history) > maxHistory {
		a.plans.history = a.plans.history[:maxHistory]
	}
}

// supersede closes an unfinished active plan.
func (a *Agent) supersede(why string) {
	if a.plans.active != nil {
		a.finish(RunSuperseded, why)
	}
}

// planStatus renders the active plan, or the last one that finished.
func (a *Agent) planStatus() *PlanStatus {
	act := a.plans.active
	if act == nil {
		return a.plans.finished
	}
	return &PlanStatus{
		ID: act.plan.ID, Action: string(act.plan.Action), From: act.plan.From, To: act.plan.To,
		Origin: originOf(act.plan.Origin),
		Steps:  append([]StepStatus(nil), act.steps...),
		Checks: act.plan.Checks,
	}
}

// originOf records what a plan was computed from, and observed gives it
// back: the one mapping between the observation and the status file. A
// restart recomputes the plan from it and adopts it only when the id is
// the same, so it holds everything the id depends on (the checks read the
// Kubernetes version and the feature gates).
func originOf(o planner.Observed) *PlanOrigin {
	return &PlanOrigin{
		Installed: o.Installed, Mode: string(o.Mode), OperatorVersion: o.OperatorVersion, KubeVirt: o.KubeVirt,
		Terminating: o.Terminating, OperatorPresent: o.OperatorPresent, Workloads: o.Workloads > 0, Strategy: o.UninstallStrategy,
		Leftovers: o.Leftovers > 0, Kubernetes: o.KubernetesVersion, FeatureGates: o.FeatureGates,
	}
}

func (o *PlanOrigin) observed() planner.Observed {
	out := planner.Observed{
		Installed: o.Installed, Mode: planner.Mode(o.Mode), OperatorVersion: o.OperatorVersion, KubeVirt: o.KubeVirt,
		Terminating: o.Terminating, OperatorPresent: o.OperatorPresent, UninstallStrategy: o.Strategy,
		KubernetesVersion: o.Kubernetes, FeatureGates: o.FeatureGates,
	}
	if o.Workloads {
		out.Workloads = 1
	}
	if o.Leftovers {
		out.Leftovers = 1
	}
	return out
}

// plan computes the plan, refreshing a stale catalog, and once more with a
// fresh catalog when the version is unknown (a release just published).
func (a *Agent) plan(ctx context.Context, d planner.Desired, obs *executor.Observation) (planner.Plan, error) {
	if err := a.refreshCatalog(ctx, a.cfg.CatalogRefresh); err != nil {
		return planner.Plan{}, err
	}
	plan, err := planner.Compute(d, obs.Observed, a.releases.cat)
	if fault.ReasonOf(err) == planner.ReasonUnknownVersion && a.cfg.Clock().Sub(a.releases.at) > time.Minute {
		if rerr := a.refreshCatalog(ctx, 0); rerr == nil {
			plan, err = planner.Compute(d, obs.Observed, a.releases.cat)
		}
	}
	return plan, err
}

func (a *Agent) refreshCatalog(ctx context.Context, maxAge time.Duration) error {
	if a.releases.cat != nil && maxAge > 0 && a.cfg.Clock().Sub(a.releases.at) < maxAge {
		return nil
	}
	cat, err := a.catalog(ctx)
	if err != nil {
		if a.releases.cat != nil {
			a.log.catalogStale(err)
			return nil // keep planning on the last good catalog
		}
		return fmt.Errorf("release catalog: %w", err)
	}
	a.releases.cat, a.releases.at = cat, a.cfg.Clock()
	return nil
}
