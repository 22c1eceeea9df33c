package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
)

// stepRun is one attempt at the next step of the active plan.
type stepRun struct {
	i            int // index of the step in the active plan
	status       *StepStatus
	step         planner.Step
	where        string    // "step 2/3 Upgrade v1.7.4 -> v1.8.4 (Operator)"
	startedAt    time.Time // the step's first start: the hop deadline counts from it
	attempt      Entry
	published    time.Time    // when the status last said what the step does
	publishedMsg string       // and what it said
	reason       fault.Reason // the hop, or waiting for its VMIs
	said         string       // the last progress message logged
}

// ProgressEvery is how often, at most, a running step's progress (what it
// waits for) is committed to the status file: a hop takes minutes, and
// the file is where people look.
const ProgressEvery = 30 * time.Second

// step runs the next step of the plan and records how it went.
func (a *Agent) step(ctx context.Context, p *pass) (verdict, error) {
	act := a.plans.active
	i := act.advanceTo(p.plan)
	r := &stepRun{i: i, status: &act.steps[i], step: p.plan.Steps[0]}
	r.where = fmt.Sprintf("step %d/%d %s", i+1, len(act.steps), r.step)
	if a.plans.lastDone == a.stepKey(i) {
		return a.noProgress(p, r), nil
	}
	if v, err := a.begin(ctx, p, r); v.stop {
		return v, err
	}
	res, err := a.cluster.Run(executor.WithHeartbeat(ctx, a.beat), r.step, executor.StepOptions{
		Deadline:  r.startedAt.Add(p.desired.HopTimeout),
		Workloads: p.desired.Workloads,
		Config:    p.desired.KubeVirtConfig,
		Progress:  func(msg string) { a.progress(ctx, p, r, msg) },
		Milestone: func(msg string, w executor.WorkloadReport) { a.milestone(ctx, p, r, msg, w) },
	})
	a.hook("step-finished")
	defer a.hook("outcome-recorded")
	return a.ended(ctx, p, r, res, err)
}

func (a *Agent) stepKey(i int) string { return a.plans.active.plan.ID + "#" + fmt.Sprint(i) }

// noProgress: the step succeeded, yet the cluster still needs it; running
// it again would loop. Stall and say so.
func (a *Agent) noProgress(p *pass, r *stepRun) verdict {
	a.plans.lastDone = ""
	a.plans.failed = &failure{Key: failureKey(a.src.digest, a.plans.active.plan.ID), Reason: ReasonNoProgress,
		Message: r.where + " reported success but the cluster did not change; not repeating it"}
	r.status.State, r.status.Message = StepFailed, a.plans.failed.Message
	p.set(PhaseFailed, a.plans.failed.Reason, a.plans.failed.Message)
	a.finish(RunFailed, a.plans.failed.Message)
	return done
}

// begin marks the step running (a resumed hop keeps its first start, so
// its deadline does not move), checks this replica still leads, records the
// intent durably in the cluster before it is touched, and says the step
// starts. Without the intent nothing starts, and the status says why in
// the same bytes every retry (no commit per back-off).
func (a *Agent) begin(ctx context.Context, p *pass, r *stepRun) (verdict, error) {
	act, s := a.plans.active, r.status
	now := a.cfg.Clock()
	r.startedAt = now
	if s.State == StepRunning && s.StartedAt != nil {
		r.startedAt = s.StartedAt.Time
	}
	s.State, s.StartedAt, s.FinishedAt, s.Message = StepRunning, ts(r.startedAt), nil, ""
	act.ran = true
	if err := a.fence(ctx); err != nil {
		s.State, s.StartedAt = StepPending, nil
		return silent, err
	}
	a.hook("planned")
	r.attempt = Entry{ID: entryID(act.plan.ID, r.i+1, now, a.cfg.Identity), PlanID: act.plan.ID, Step: r.i + 1, Of: len(act.steps),
		Type: string(r.step.Type), From: r.step.From, To: r.step.To, State: StepRunning, StartedAt: NewTimestamp(now), By: a.cfg.Identity}
	if err := a.intend(ctx, r.attempt); err != nil {
		s.State, s.StartedAt = StepPending, nil
		reason := ReasonJournalUnavailable
		var full *journalFull
		if errors.As(err, &full) || errors.Is(err, errMemoryTooLarge) {
			reason = ReasonJournalFull
		}
		err = fmt.Errorf("not starting %s: %w", r.where, err)
		p.set(PhaseProgressing, reason, err.Error())
		return done, err
	}
	a.hook("intent-recorded")
	p.set(PhaseProgressing, ReasonHopInProgress, r.where+": starting")
	a.publishNow(ctx, p)
	r.published, r.reason = a.cfg.Clock(), ReasonHopInProgress
	a.log = a.log.with("plan", act.plan.ID)
	a.log.stepStarted(r.i+1, len(act.steps), r.step)
	a.cluster.Event(ctx, false, EventStepStarted, r.where)
	return goOn, nil
}

// milestone: a hop is done and its VMIs are moving to its virt-launcher.
func (a *Agent) milestone(ctx context.Context, p *pass, r *stepRun, msg string, w executor.WorkloadReport) {
	a.workloads = workloadStatus(w)
	a.cfg.Metrics.setOutdated(w.Outdated.Count + w.Moving.Count + w.CannotMove.Count)
	p.set(PhaseProgressing, ReasonWaitingForWorkloads, r.where+": "+msg)
	a.publishNow(ctx, p)
	r.published, r.reason = a.cfg.Clock(), ReasonWaitingForWorkloads
}

// publishNow publishes in the middle of a step: the status is not on the
// step's critical path, so a failed push is only logged.
func (a *Agent) publishNow(ctx context.Context, p *pass) {
	if err := a.publish(ctx, p); err != nil {
		a.log.statusPushFailed(err)
	}
}

// ended records the outcome of the step: in the journal, the plan, the
// metrics, an Event; and what the pass does next.
func (a *Agent) ended(ctx context.Context, p *pass, r *stepRun, res executor.StepResult, err error) (verdict, error) {
	s := r.status
	s.Notes, s.OperatorFirst = res.Notes, res.OperatorFirst
	a.recordWorkloads(r, res, err)
	took := a.cfg.Clock().Sub(r.startedAt)
	switch {
	case err == nil:
		a.outcome(ctx, r, StepSucceeded, "")
		s.State, s.FinishedAt = StepSucceeded, ts(a.cfg.Clock())
		if res.AlreadyDone {
			s.Notes = append(s.Notes, "already done when checked")
		}
		a.plans.lastDone = a.stepKey(r.i)
		a.cfg.Metrics.hop(r.step, "Succeeded", took)
		a.log.stepSucceeded(r.i+1, len(a.plans.active.steps), r.step, took)
		a.cluster.Event(ctx, false, EventStepSucceeded, r.where)
		return verdict{stop: true, again: true}, nil
	case errors.Is(err, executor.ErrStalePlan):
		a.outcome(ctx, r, EntryRetrying, err.Error())
		s.State, s.StartedAt = StepPending, nil
		a.log.stalePlan(err)
		return verdict{stop: true, again: true}, nil
	case fault.Stalls(err):
		a.outcome(ctx, r, StepFailed, err.Error())
		s.State, s.FinishedAt, s.Message = StepFailed, ts(a.cfg.Clock()), err.Error()
		a.cfg.Metrics.hop(r.step, "Failed", took)
		a.plans.failed = &failure{Key: failureKey(a.src.digest, a.plans.active.plan.ID), Reason: fault.ReasonOf(err), Message: r.where + ": " + err.Error()}
		a.cluster.Event(ctx, true, EventStepFailed, r.where+": "+err.Error())
		p.set(PhaseFailed, a.plans.failed.Reason, a.plans.failed.Message)
		a.finish(RunFailed, a.plans.failed.Message)
		return done, nil
	default:
		a.outcome(ctx, r, EntryRetrying, err.Error())
		s.Message = err.Error()
		p.set(PhaseProgressing, ReasonRetrying, r.where+": "+err.Error())
		return done, err
	}
}

// outcome records how the attempt ended; the memory is written at once (a
// failure to is logged: the entry stays and is written with the next
// change).
func (a *Agent) outcome(ctx context.Context, r *stepRun, state StepState, message string) {
	r.attempt.State, r.attempt.FinishedAt, r.attempt.Message = state, ts(a.cfg.Clock()), redact.Text(message, 300)
	a.journal.record(r.attempt)
	if err := a.remember(ctx); err != nil {
		a.log.memoryFailed(err)
	}
}

// recordWorkloads keeps the workload check of an upgrade that ran to its
// end (or failed on its workloads).
func (a *Agent) recordWorkloads(r *stepRun, res executor.StepResult, err error) {
	reason := fault.ReasonOf(err)
	if r.step.Type != planner.StepUpgrade || err != nil && reason != executor.ReasonWorkloadDisrupted && reason != executor.ReasonWorkloadsOutdated {
		return
	}
	w := res.Workloads
	a.workloads = workloadStatus(w)
	a.cfg.Metrics.disruptions(w.Disrupted.Count + w.ShutDown.Count + w.Restarted.Count)
	a.cfg.Metrics.setOutdated(w.Outdated.Count + w.Moving.Count + w.CannotMove.Count)
	if w.Note != "" {
		r.status.Notes = append(r.status.Notes, w.Note)
	}
}

// progress logs what the step does, shows it on the status endpoint, and
// commits it to the status file at most every ProgressEvery.
// A message said again (the executor repeats what it waits for) is logged
// once.
func (a *Agent) progress(ctx context.Context, p *pass, r *stepRun, msg string) {
	if msg != r.said {
		r.said = msg
		a.log.stepProgress(r.where, msg)
		a.mu.Lock()
		a.snapshot.Message = r.where + ": " + msg
		a.mu.Unlock()
	}
	if now := a.cfg.Clock(); msg != r.publishedMsg && now.Sub(r.published) >= ProgressEvery {
		r.published, r.publishedMsg = now, msg
		p.set(PhaseProgressing, r.reason, r.where+": "+msg)
		a.publishNow(ctx, p)
	}
}

func workloadStatus(w executor.WorkloadReport) *Workloads {
	named := func(g executor.WorkloadGroup) NamedCount { return NamedCount{Count: g.Count, Names: g.Names} }
	return &Workloads{RunningBefore: w.RunningBefore, RunningNow: w.RunningNow, Moved: w.Moved,
		Moving: named(w.Moving), Outdated: named(w.Outdated), CannotMove: named(w.CannotMove), ShutDown: named(w.ShutDown),
		Restarted: named(w.Restarted), Disrupted: named(w.Disrupted), Note: w.Note}
}
