package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
)

// Reconcile is one pass. It reports whether another pass should follow at
// once (a step finished, the plan went stale) and returns an error when
// the pass should be retried with backoff.
func (a *Agent) Reconcile(ctx context.Context) (again bool, err error) {
	start := a.cfg.Clock()
	p := &pass{Status: Status{Cluster: a.cfg.ClusterName}}
	defer func() {
		a.cfg.Metrics.observeReconcile(a.cfg.Clock().Sub(start), err)
		if err == nil {
			a.mu.Lock()
			a.lastOK = a.cfg.Clock()
			a.mu.Unlock()
		}
	}()
	if err := a.recall(ctx); err != nil {
		// Nothing is read from Git or done without the memory; the status
		// says why (without the history the memory holds, until it is back).
		reason := ReasonClusterUnavailable
		var unreadable *memoryError
		if errors.As(err, &unreadable) {
			reason = ReasonMemoryUnreadable
		}
		p.set(PhaseUnknown, reason, err.Error())
		_ = a.publish(ctx, p)
		return false, err
	}
	defer func() {
		if err := a.remember(ctx); err != nil {
			a.log.memoryFailed(err) // written again after the next change
		}
	}()
	if stop, err := a.readRepo(ctx, p); stop {
		return false, err
	}
	obs, err := a.observe(ctx, p)
	if err != nil {
		return false, err
	}
	if a.src.err != nil {
		phase := PhaseInvalid
		if fault.ReasonOf(a.src.err) == planner.ReasonNotInFleet {
			phase = PhaseRefused
		}
		p.set(phase, reasonOf(a.src.err), a.src.err.Error())
		a.cfg.Metrics.setSuspended(false)
		return false, a.publish(ctx, p)
	}
	d := *a.src.desired
	p.Desired = a.desiredSummary("")
	a.cfg.Metrics.setSuspended(d.Suspend)
	if d.Suspend {
		p.set(PhaseSuspended, ReasonSuspended, "spec.suspend is true: no step starts until it is false")
		p.Plan = a.planStatus()
		return false, a.publish(ctx, p)
	}

	defer func() {
		if !again {
			a.plans.lastDone = "" // the guard is for back-to-back passes only
		}
	}()
	if stop, err := a.drifted(ctx, p, d, obs); stop {
		if err != nil {
			return false, err
		}
		return p.Reason == string(ReasonDriftCorrected), a.publish(ctx, p)
	}
	plan, err := a.plan(ctx, d, obs)
	if err != nil {
		return false, a.refused(ctx, p, err)
	}
	p.Desired = a.desiredSummary(plan.To)
	a.cfg.Metrics.plan(plan)
	if plan.Action == planner.ActionNone {
		return false, a.upToDate(ctx, p, d, plan, obs)
	}

	a.track(plan, obs)
	if f := a.plans.failed; f != nil {
		if f.Key == failureKey(a.src.digest, a.plans.active.plan.ID) {
			p.set(PhaseFailed, f.Reason, f.Message)
			p.Plan = a.planStatus()
			return false, a.publish(ctx, p)
		}
		a.plans.failed = nil // the desired file or the cluster changed: try again
	}
	g, err := a.ringGate(ctx, plan, obs)
	if err != nil {
		return false, err
	}
	if g == nil {
		g = a.gate(d, plan, obs)
	}
	if g != nil {
		p.set(g.phase, g.reason, g.message)
		p.Plan = a.planStatus()
		return false, a.publish(ctx, p)
	}
	return a.step(ctx, p, d, plan, obs)
}

// readRepo polls the branch and reads the desired content when it moved.
// It reports whether the pass stops here (after publishing what it can).
func (a *Agent) readRepo(ctx context.Context, p *pass) (bool, error) {
	head, err := a.repo.Head(ctx, a.lastSeen)
	a.cfg.Metrics.gitOp("poll", err)
	if err != nil {
		if fault.ReasonOf(err) == gitsource.ReasonHistoryRewritten {
			p.set(PhaseInvalid, gitsource.ReasonHistoryRewritten, err.Error())
			return true, a.publish(ctx, p)
		}
		return true, err // Git is down: nothing to publish to either
	}
	if head == "" {
		p.set(PhaseInvalid, gitsource.ReasonDesiredFileMissing, "the branch has no commits yet; commit "+a.cfg.DesiredPath)
		return true, a.publish(ctx, p)
	}
	a.lastSeen = head
	a.log = logger{a.cfg.Logger}.with("revision", gitsource.Revision(head).Short())
	if err := a.readDesired(ctx, head); err != nil {
		return true, err
	}
	a.adoptRevision()
	p.DesiredRevision = a.src.rev
	return false, nil
}

// observe reads the cluster; a cluster it cannot read is published as
// Unknown and returned as the pass's error (retried with back-off).
func (a *Agent) observe(ctx context.Context, p *pass) (*executor.Observation, error) {
	obs, err := a.cluster.Observe(ctx)
	if err != nil {
		p.set(PhaseUnknown, ReasonClusterUnavailable, "cannot read the cluster: "+err.Error())
		if a.src.desired != nil {
			p.Desired = a.desiredSummary("")
		}
		_ = a.publish(ctx, p)
		return nil, err
	}
	p.Observed = summarizeObserved(obs)
	a.cfg.Metrics.observed(obs)
	return obs, nil
}

// refused publishes a plan the planner refused, with its checks; any other
// planning error is the catalog's (Unknown, retried).
func (a *Agent) refused(ctx context.Context, p *pass, err error) error {
	var re *planner.RefusalError
	if !errors.As(err, &re) {
		p.set(PhaseUnknown, ReasonCatalogUnavailable, err.Error())
		_ = a.publish(ctx, p)
		return err
	}
	a.cfg.Metrics.preflight(re.Checks)
	p.Preflight = re.Checks
	a.supersede("refused: " + re.Message)
	p.set(PhaseRefused, re.Reason, re.Message)
	return a.publish(ctx, p)
}

// upToDate closes the active plan when the cluster is as desired, and
// records what kvgitops left running (drift is measured against it).
func (a *Agent) upToDate(ctx context.Context, p *pass, d planner.Desired, plan planner.Plan, obs *executor.Observation) error {
	a.finish(RunSucceeded, "")
	a.plans.failed = nil
	// Succeeded: kvgitops's last run took the cluster here, even one that
	// timed out while the operator went on and finished the hop.
	phase, msg := PhaseIdle, "nothing to do"
	if h := a.plans.history; len(h) > 0 && (h[0].Result == RunSucceeded || h[0].Result == RunFailed && h[0].To == plan.To) {
		phase = PhaseSucceeded
	}
	switch {
	case d.State == planner.StateAbsent:
		msg = "KubeVirt is absent, as desired"
	case plan.To != "":
		msg = plan.To + " is installed, as desired"
	}
	if obs.Settling() {
		p.set(PhaseProgressing, ReasonSettling, fmt.Sprintf("KubeVirt %s is installed but not ready yet: %s", obs.Installed, obs.Summary()))
		return a.publish(ctx, p)
	}
	if len(p.Drift) == 0 {
		applied := planner.AppliedFrom(a.src.digest, obs.Observed)
		a.applied = &applied
	}
	p.set(phase, ReasonUpToDate, msg)
	return a.publish(ctx, p)
}

// readDesired reads and parses the desired file when the head moved. What
// counts is the desired content, not the head: the revision advances only
// when the file's bytes (or, for a file that cannot be read, the reason
// and message) change, so the agent's own status commits change nothing
// and a steady state, healthy or broken, makes no commits. A missing file
// has no revision at all.
func (a *Agent) readDesired(ctx context.Context, head string) error {
	if head == a.src.readRev {
		return nil
	}
	data, from, err := a.repo.Read(ctx, head, a.cfg.DesiredPath)
	a.cfg.Metrics.gitOp("read", err)
	if err != nil && !fault.Stalls(err) {
		return err
	}
	a.accept(a.cfg.DesiredPath, from)
	risks, rerr := a.readRisks(ctx, head)
	if rerr != nil && !fault.Stalls(rerr) {
		return rerr
	}
	a.src.readRev = head
	digest, key := "", ""
	if err == nil {
		sum := sha256.Sum256(data)
		digest = hex.EncodeToString(sum[:])[:16]
		key = "bytes:" + digest + ":" + from.Signer
	} else {
		key = "error:" + err.Error()
	}
	if rerr != nil {
		key += "|risks-error:" + rerr.Error()
	} else if risks != nil {
		sum := sha256.Sum256(risks)
		key += "|risks:" + hex.EncodeToString(sum[:])
	}
	if key == a.src.key {
		return nil
	}
	a.src.key = key
	a.src.rev, a.src.digest, a.src.from = head, digest, from
	if fault.ReasonOf(err) == gitsource.ReasonDesiredFileMissing {
		a.src.rev = ""
	}
	if err == nil {
		err = rerr
	}
	if err != nil {
		a.src.desired, a.src.err = nil, err
		return nil
	}
	d, perr := a.parseDesired(data)
	if perr == nil && risks != nil {
		d.ExtraRisks, perr = planner.ParseRisks(risks)
		if perr != nil {
			perr = fmt.Errorf("%s: %w", a.cfg.RisksPath, perr)
		}
	}
	if perr != nil {
		a.src.desired, a.src.err = nil, perr
		return nil
	}
	a.src.desired, a.src.err = &d, nil
	return nil
}

// readRisks reads the repository's risks file: nil when there is none.
// When signatures are verified it must be signed as the desired file is.
func (a *Agent) readRisks(ctx context.Context, head string) ([]byte, error) {
	data, from, err := a.repo.Read(ctx, head, a.cfg.RisksPath)
	a.cfg.Metrics.gitOp("read", err)
	if fault.ReasonOf(err) == gitsource.ReasonDesiredFileMissing {
		return nil, nil
	}
	a.accept(a.cfg.RisksPath, from)
	return data, err
}

// accept remembers the signed commit that set verified content at path:
// signed content there only moves forward from it.
func (a *Agent) accept(path string, from Provenance) {
	if from.SetBy == "" || a.accepted[path] == from.SetBy {
		return
	}
	if a.accepted == nil {
		a.accepted = map[string]string{}
	}
	a.accepted[path] = from.SetBy
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

// step runs the next step of the plan and records how it went.
func (a *Agent) step(ctx context.Context, p *pass, d planner.Desired, plan planner.Plan, obs *executor.Observation) (bool, error) {
	act := a.plans.active
	i := act.advanceTo(plan)
	s := &act.steps[i]
	step := plan.Steps[0]
	key := act.plan.ID + "#" + fmt.Sprint(i)
	if a.plans.lastDone == key {
		// The step succeeded, yet the cluster still needs it: running it
		// again would loop. Stall and say so.
		a.plans.lastDone = ""
		a.plans.failed = &failure{Key: failureKey(a.src.digest, act.plan.ID), Reason: ReasonNoProgress,
			Message: fmt.Sprintf("step %d/%d %s reported success but the cluster did not change; not repeating it", i+1, len(act.steps), step)}
		s.State, s.Message = StepFailed, a.plans.failed.Message
		p.set(PhaseFailed, a.plans.failed.Reason, a.plans.failed.Message)
		p.Plan = a.planStatus()
		a.finish(RunFailed, a.plans.failed.Message)
		return false, a.publish(ctx, p)
	}
	now := a.cfg.Clock()
	startedAt := now
	if s.State == StepRunning && s.StartedAt != nil {
		startedAt = s.StartedAt.Time // resuming a hop: its deadline does not move
	}
	s.State, s.StartedAt, s.FinishedAt, s.Message = StepRunning, ts(startedAt), nil, ""
	act.ran = true
	where := fmt.Sprintf("step %d/%d %s", i+1, len(act.steps), step)
	if err := a.fence(ctx); err != nil {
		s.State, s.StartedAt = StepPending, nil
		return false, err
	}
	a.hook("planned")
	// The intent is durable in the cluster before the cluster is touched.
	// Without it nothing starts, and the status says why in the same bytes
	// every retry (no commit per back-off).
	notStarting := func(err error) (bool, error) {
		s.State, s.StartedAt = StepPending, nil
		reason := ReasonJournalUnavailable
		var full *journalFull
		if errors.As(err, &full) || errors.Is(err, errMemoryTooLarge) {
			reason = ReasonJournalFull
		}
		err = fmt.Errorf("not starting %s: %w", where, err)
		p.set(PhaseProgressing, reason, err.Error())
		p.Plan = a.planStatus()
		_ = a.publish(ctx, p)
		return false, err
	}
	attempt := Entry{ID: entryID(act.plan.ID, i+1, now, a.cfg.Identity), PlanID: act.plan.ID, Step: i + 1, Of: len(act.steps),
		Type: string(step.Type), From: step.From, To: step.To, State: StepRunning, StartedAt: NewTimestamp(now), By: a.cfg.Identity}
	if err := a.intend(ctx, attempt); err != nil {
		return notStarting(err)
	}
	a.hook("intent-recorded")
	p.set(PhaseProgressing, ReasonHopInProgress, where+": starting")
	p.Plan = a.planStatus()
	if err := a.publish(ctx, p); err != nil {
		a.log.statusPushFailed(err) // status is not on the critical path
	}
	a.log = a.log.with("plan", act.plan.ID)
	a.log.stepStarted(i+1, len(act.steps), step)
	a.cluster.Event(ctx, false, EventStepStarted, where)

	res, err := a.cluster.Run(ctx, step, executor.StepOptions{
		Deadline:  startedAt.Add(d.HopTimeout),
		Workloads: d.Workloads,
		Progress:  func(msg string) { a.progress(where, msg) },
		Milestone: func(msg string, w executor.WorkloadReport) {
			a.workloads = workloadStatus(w)
			a.cfg.Metrics.setOutdated(len(w.Outdated))
			p.set(PhaseProgressing, ReasonWaitingForWorkloads, where+": "+msg)
			p.Plan = a.planStatus()
			if err := a.publish(ctx, p); err != nil {
				a.log.statusPushFailed(err)
			}
		},
	})
	a.hook("step-finished")
	s.Notes, s.OperatorFirst = res.Notes, res.OperatorFirst
	defer a.hook("outcome-recorded")
	outcome := func(state StepState, message string) {
		attempt.State, attempt.FinishedAt, attempt.Message = state, ts(a.cfg.Clock()), redact.Text(message, 300)
		a.journal.record(attempt)
		if err := a.remember(ctx); err != nil {
			a.log.memoryFailed(err) // kept in memory and written again with the next change
		}
	}
	if r := fault.ReasonOf(err); step.Type == planner.StepUpgrade && (err == nil || r == executor.ReasonWorkloadDisrupted || r == executor.ReasonWorkloadsOutdated) {
		w := res.Workloads
		a.workloads = workloadStatus(w)
		a.cfg.Metrics.disruptions(len(w.Disrupted))
		a.cfg.Metrics.setOutdated(len(w.Outdated))
		if w.Note != "" {
			s.Notes = append(s.Notes, w.Note)
		}
	}
	took := a.cfg.Clock().Sub(startedAt)
	switch {
	case err == nil:
		outcome(StepSucceeded, "")
		s.State, s.FinishedAt = StepSucceeded, ts(a.cfg.Clock())
		if res.AlreadyDone {
			s.Notes = append(s.Notes, "already done when checked")
		}
		a.plans.lastDone = key
		a.cfg.Metrics.hop(step, "Succeeded", took)
		a.log.stepSucceeded(i+1, len(act.steps), step, took)
		a.cluster.Event(ctx, false, EventStepSucceeded, where)
		return true, nil
	case errors.Is(err, executor.ErrStalePlan):
		outcome(EntryRetrying, err.Error())
		s.State, s.StartedAt = StepPending, nil
		a.log.stalePlan(err)
		return true, nil
	case fault.Stalls(err):
		outcome(StepFailed, err.Error())
		reason := fault.ReasonOf(err)
		s.State, s.FinishedAt, s.Message = StepFailed, ts(a.cfg.Clock()), err.Error()
		a.cfg.Metrics.hop(step, "Failed", took)
		a.plans.failed = &failure{Key: failureKey(a.src.digest, act.plan.ID), Reason: reason, Message: where + ": " + err.Error()}
		a.cluster.Event(ctx, true, EventStepFailed, where+": "+err.Error())
		p.set(PhaseFailed, reason, a.plans.failed.Message)
		p.Plan = a.planStatus()
		a.finish(RunFailed, a.plans.failed.Message)
		return false, a.publish(ctx, p)
	default:
		outcome(EntryRetrying, err.Error())
		s.Message = err.Error()
		p.set(PhaseProgressing, ReasonRetrying, where+": "+err.Error())
		p.Plan = a.planStatus()
		_ = a.publish(ctx, p)
		return false, err
	}
}

func failureKey(digest, planID string) string { return digest + "/" + planID }

// reasonOf names why the desired file cannot be used.
func reasonOf(err error) fault.Reason {
	if r := fault.ReasonOf(err); r != "" {
		return r
	}
	return planner.ReasonInvalidDesiredState
}

func (a *Agent) progress(where, msg string) {
	a.log.stepProgress(where, msg)
	a.mu.Lock()
	a.snapshot.Message = where + ": " + msg
	a.mu.Unlock()
}

func workloadStatus(w executor.WorkloadReport) *Workloads {
	return &Workloads{RunningBefore: w.RunningBefore, RunningNow: w.RunningNow, Disrupted: w.Disrupted,
		Outdated: len(w.Outdated), OutdatedVMIs: w.Outdated, Note: w.Note}
}
