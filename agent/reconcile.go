package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
)

// pass is what one reconcile builds: the status, and what its stages found
// for the ones after them.
type pass struct {
	Status
	obs     *executor.Observation
	desired planner.Desired
	plan    planner.Plan
}

func (p *pass) set(phase Phase, reason fault.Reason, message string) {
	p.Phase, p.Reason, p.Message = phase, string(reason), message
}

// verdict is how a stage ends the pass, or lets it go on.
type verdict struct {
	stop    bool
	publish bool // the status the stage set is published
	again   bool // another pass follows at once
}

var (
	goOn   = verdict{}
	done   = verdict{stop: true, publish: true} // the status says it
	silent = verdict{stop: true}                // nothing to say, or nowhere to say it
)

// stage is one step of a pass: it reads what earlier stages put in the
// pass, and stops the pass or lets it go on.
type stage func(ctx context.Context, p *pass) (verdict, error)

// Reconcile is one pass: its stages run in order until one reaches a
// verdict, and the status is published once, when the pass ends (a step
// also publishes as it starts and while it waits for workloads: the status
// is not on its critical path). It reports whether another pass should
// follow at once (a step finished, the plan went stale) and returns an
// error when the pass should be retried with back-off.
func (a *Agent) Reconcile(ctx context.Context) (again bool, err error) {
	start := a.cfg.Clock()
	p := &pass{Status: Status{Cluster: a.cfg.ClusterName}}
	var v verdict
	defer func() {
		if v.publish {
			if perr := a.publish(ctx, p); err == nil {
				err = perr
			}
		}
		a.passEnded(ctx, start, again, err)
	}()
	for _, s := range []stage{a.recallMemory, a.readRepo, a.observe, a.usable, a.suspended, a.drifted, a.planned, a.tracked, a.gated, a.step} {
		if v, err = s(ctx, p); v.stop {
			return v.again, err
		}
	}
	return false, nil
}

// passEnded remembers what the pass changed and records how it went.
func (a *Agent) passEnded(ctx context.Context, start time.Time, again bool, err error) {
	if !again {
		a.plans.lastDone = "" // the no-progress guard is for back-to-back passes only
	}
	if a.recalled {
		if err := a.remember(ctx); err != nil {
			a.log.memoryFailed(err) // written again after the next change
		}
	}
	a.cfg.Metrics.observeReconcile(a.cfg.Clock().Sub(start), err)
	if err == nil {
		a.mu.Lock()
		a.lastOK = a.cfg.Clock()
		a.mu.Unlock()
	}
}

// recallMemory: nothing is read from Git or done without the memory; the
// status says why (without the history the memory holds, until it is
// back).
func (a *Agent) recallMemory(ctx context.Context, p *pass) (verdict, error) {
	err := a.recall(ctx)
	if err == nil {
		return goOn, nil
	}
	reason := ReasonClusterUnavailable
	var unreadable *memoryError
	if errors.As(err, &unreadable) {
		reason = ReasonMemoryUnreadable
	}
	p.set(PhaseUnknown, reason, err.Error())
	return done, err
}

// observe reads the cluster; a cluster it cannot read is published as
// Unknown and returned as the pass's error (retried with back-off).
func (a *Agent) observe(ctx context.Context, p *pass) (verdict, error) {
	obs, err := a.cluster.Observe(ctx)
	if err != nil {
		p.set(PhaseUnknown, ReasonClusterUnavailable, "cannot read the cluster: "+err.Error())
		if a.src.desired != nil {
			p.Desired = a.desiredSummary("")
		}
		return done, err
	}
	p.obs = obs
	p.Observed = summarizeObserved(obs)
	a.cfg.Metrics.observed(obs)
	return goOn, nil
}

// usable: nothing is planned from a desired file that cannot be used.
func (a *Agent) usable(_ context.Context, p *pass) (verdict, error) {
	if err := a.src.err; err != nil {
		phase := PhaseInvalid
		if fault.ReasonOf(err) == planner.ReasonNotInFleet {
			phase = PhaseRefused
		}
		p.set(phase, reasonOf(err), err.Error())
		a.cfg.Metrics.setSuspended(false)
		return done, nil
	}
	p.desired = *a.src.desired
	p.Desired = a.desiredSummary("")
	a.cfg.Metrics.setSuspended(p.desired.Suspend)
	return goOn, nil
}

// reasonOf names why the desired file cannot be used.
func reasonOf(err error) fault.Reason {
	if r := fault.ReasonOf(err); r != "" {
		return r
	}
	return planner.ReasonInvalidDesiredState
}

func (a *Agent) suspended(_ context.Context, p *pass) (verdict, error) {
	if !p.desired.Suspend {
		return goOn, nil
	}
	p.set(PhaseSuspended, ReasonSuspended, "spec.suspend is true: no step starts until it is false")
	return done, nil
}

// planned computes the plan; a refusal (or a catalog that cannot be read)
// is published, and so is a cluster that is as desired.
func (a *Agent) planned(ctx context.Context, p *pass) (verdict, error) {
	plan, err := a.plan(ctx, p.desired, p.obs)
	if err == nil && needsWorkloads(plan) && p.obs.Workloads == nil {
		// The plan changes KubeVirt: what it does to every VMI is checked
		// (and with it, what runs), so it is planned again with them.
		if err := a.cluster.ObserveWorkloads(ctx, p.obs); err != nil {
			p.set(PhaseUnknown, ReasonClusterUnavailable, "cannot read the VMIs: "+err.Error())
			return done, err
		}
		plan, err = a.plan(ctx, p.desired, p.obs)
	}
	if err != nil {
		return done, a.refused(p, err)
	}
	if p.Forecast = plan.Forecast; plan.Forecast != nil {
		a.cfg.Metrics.forecast(*plan.Forecast)
	}
	p.plan = plan
	p.Desired = a.desiredSummary(plan.To)
	a.cfg.Metrics.plan(plan)
	if plan.Action == planner.ActionNone {
		if a.vmisLeftBehind(ctx, p) {
			return done, nil
		}
		a.upToDate(p)
		return done, nil
	}
	return goOn, nil
}

// needsWorkloads: a plan whose steps change KubeVirt.
func needsWorkloads(plan planner.Plan) bool {
	for _, s := range plan.Steps {
		if s.Type.ChangesKubeVirt() {
			return true
		}
	}
	return false
}

// refused shows a plan the planner refused, with its checks; any other
// planning error is the catalog's (Unknown, retried: returned).
func (a *Agent) refused(p *pass, err error) error {
	var re *planner.RefusalError
	if !errors.As(err, &re) {
		p.set(PhaseUnknown, ReasonCatalogUnavailable, err.Error())
		return err
	}
	a.cfg.Metrics.preflight(re.Checks)
	p.Preflight, p.Forecast = re.Checks, re.Forecast
	a.supersede("refused: " + re.Message)
	p.set(PhaseRefused, re.Reason, re.Message)
	return nil
}

// vmisLeftBehind holds the success of a hop whose VMIs have not moved: a
// pass that finds KubeVirt itself at the desired version after a hop
// whose workload wait failed, or was cut short by a restart or a leader
// change, must not call it UpToDate while VMIs the policy waits for still
// run an older virt-launcher (found on two real nodes). A failed wait
// stays Failed (WorkloadsOutdated) until they moved or the desired file
// changes; an interrupted one is Progressing (WaitingForWorkloads) until
// they moved.
func (a *Agent) vmisLeftBehind(ctx context.Context, p *pass) bool {
	to := p.plan.To
	failed := a.workloadWaitFailed()
	if to == "" || p.obs.Installed != to || !failed && !a.hopUnfinished(to) {
		return false
	}
	if p.obs.Workloads == nil {
		if err := a.cluster.ObserveWorkloads(ctx, p.obs); err != nil {
			p.set(PhaseUnknown, ReasonClusterUnavailable, "cannot read the VMIs: "+err.Error())
			return true
		}
	}
	r, wait := p.obs.LeftBehind(to, p.desired.Workloads)
	a.reportLeftBehind(r)
	switch {
	case r.NotMoved() == 0 || !wait && !failed:
		if a.plans.active == nil && a.mem != nil {
			a.mem.Plan = nil // the hop cut short by the restart is settled: not looked at again
		}
		return false
	case failed:
		p.set(PhaseFailed, a.plans.failed.Reason, fmt.Sprintf("%s is installed, but %d VMIs still run an older virt-launcher; this clears once KubeVirt has moved them (it retries failed migrations) or the desired file changes. The hop: %s",
			to, r.NotMoved(), a.plans.failed.Message))
	default:
		p.set(PhaseProgressing, ReasonWaitingForWorkloads, fmt.Sprintf("%s is installed; waiting for VMIs to move to its virt-launcher (the hop's wait was interrupted): %d moving, %d outdated",
			to, r.Moving.Count, r.Outdated.Count))
	}
	return true
}

// workloadWaitFailed: the last hop failed on its VMIs, for the desired
// content still in force.
func (a *Agent) workloadWaitFailed() bool {
	f := a.plans.failed
	return f != nil && f.Reason == executor.ReasonWorkloadsOutdated && strings.HasPrefix(f.Key, failureKey(a.src.digest, ""))
}

// reportLeftBehind puts the hop's workload report, as things are now, in
// the status (a settled report keeps its note).
func (a *Agent) reportLeftBehind(r executor.WorkloadReport) {
	if w := a.workloads; r.NotMoved() > 0 || w == nil || w.Moving.Count+w.Outdated.Count > 0 {
		a.workloads = workloadStatus(r)
		a.cfg.Metrics.setOutdated(r.Outdated.Count + r.Moving.Count + r.CannotMove.Count)
	}
}

// hopUnfinished: the plan the agent was running, or the one its memory
// holds from before a restart, has a hop to to that did not succeed (its
// workload wait did not end).
func (a *Agent) hopUnfinished(to string) bool {
	var steps []StepStatus
	switch {
	case a.plans.active != nil:
		steps = a.plans.active.steps
	case a.mem != nil && a.mem.Plan != nil:
		steps = a.mem.Plan.Steps
	}
	return slices.ContainsFunc(steps, func(s StepStatus) bool {
		return s.Type == string(planner.StepUpgrade) && s.To == to && s.State != StepSucceeded
	})
}

// upToDate closes the active plan when the cluster is as desired, and
// records what kvgitops left running (drift is measured against it).
func (a *Agent) upToDate(p *pass) {
	a.finish(RunSucceeded, "")
	a.plans.failed = nil
	if obs := p.obs; obs.Settling() {
		p.set(PhaseProgressing, ReasonSettling, fmt.Sprintf("KubeVirt %s is installed but not ready yet: %s", obs.Installed, obs.Summary()))
		return
	}
	if len(p.Drift) == 0 {
		applied := planner.AppliedFrom(a.src.digest, p.obs.Observed)
		a.applied = &applied
	}
	msg := "nothing to do"
	switch {
	case p.desired.State == planner.StateAbsent:
		msg = "KubeVirt is absent, as desired"
	case p.plan.To != "":
		msg = p.plan.To + " is installed, as desired"
	}
	p.set(a.settledPhase(p.plan.To), ReasonUpToDate, msg)
}

// settledPhase is Succeeded when kvgitops's last run took the cluster to
// to (even one that timed out while the operator went on and finished the
// hop), Idle when kvgitops did nothing for it.
func (a *Agent) settledPhase(to string) Phase {
	if h := a.plans.history; len(h) > 0 && (h[0].Result == RunSucceeded || h[0].Result == RunFailed && h[0].To == to) {
		return PhaseSucceeded
	}
	return PhaseIdle
}

// tracked makes the plan the active one; a plan that failed terminally
// stalls until the desired file or the cluster changes.
func (a *Agent) tracked(_ context.Context, p *pass) (verdict, error) {
	a.track(p.plan, p.obs)
	f := a.plans.failed
	if f == nil {
		return goOn, nil
	}
	if f.Key == failureKey(a.src.digest, a.plans.active.plan.ID) {
		p.set(PhaseFailed, f.Reason, f.Message)
		return done, nil
	}
	a.plans.failed = nil // the desired file or the cluster changed: try again
	return goOn, nil
}

// gated holds the plan back at a gate: a fleet's ring, manual approval, a
// maintenance window.
func (a *Agent) gated(ctx context.Context, p *pass) (verdict, error) {
	g, err := a.ringGate(ctx, p.plan, p.obs)
	if err != nil {
		return silent, err
	}
	if g == nil {
		g = a.gate(p.desired, p.plan, p.obs)
	}
	if g == nil {
		return goOn, nil
	}
	p.set(g.phase, g.reason, g.message)
	return done, nil
}

func failureKey(digest, planID string) string { return digest + "/" + planID }
