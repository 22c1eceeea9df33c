package agent

import (
	"bytes"
	"context"
	"fmt"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
)

func summarizeObserved(o *executor.Observation) ObservedSummary {
	s := ObservedSummary{Version: o.Installed, OperatorVersion: o.OperatorVersion, Kubernetes: o.ServerVersion}
	if o.Operator != nil && s.OperatorVersion == "" {
		s.OperatorVersion = o.Operator.Version
	}
	if o.KubeVirt != nil {
		s.Mode = string(o.Mode)
		if c, ok := o.KubeVirt.Condition("Available"); ok {
			s.Available = c.Status == "True"
		} else if c, ok := o.KubeVirt.Condition("Ready"); ok {
			s.Available = c.Status == "True"
		}
	}
	return s
}

func (a *Agent) desiredSummary(resolved string) *DesiredSummary {
	d := a.src.desired
	s := &DesiredSummary{State: string(d.State), Version: d.Version, Resolved: resolved, Signer: a.src.from.Signer, SetBy: a.src.from.SetBy, Digest: a.src.digest}
	if d.Method != planner.MethodAuto {
		s.Method = string(d.Method)
	}
	if d.Approval == planner.ApprovalManual {
		s.Approval = string(d.Approval)
	}
	if d.Compatibility == planner.CompatibilityStrict {
		s.Compatibility = string(d.Compatibility)
	}
	if d.Drift == planner.DriftCorrect {
		s.Drift = string(d.Drift)
	}
	s.AcceptRisks = d.AcceptRisks
	if f := a.src.fleet; f != nil {
		s.Ring = f.Rings[a.src.member.Ring].Name
	}
	if len(d.ExtraRisks) > 0 {
		s.Risks = a.cfg.RisksPath
	}
	return s
}

// conditionsFor computes kstatus conditions; a condition keeps its
// transition time while its status stays the same.
func (a *Agent) conditionsFor(p *pass) []Condition {
	now := NewTimestamp(a.cfg.Clock())
	ready, reconciling, stalled := "False", "False", "False"
	switch p.Phase {
	case PhaseSucceeded, PhaseIdle:
		ready = "True"
	case PhaseProgressing, PhaseAwaitingApproval, PhaseWaitingForWindow, PhaseWaitingForRing:
		reconciling = "True"
	case PhaseFailed, PhaseInvalid, PhaseRefused:
		stalled = "True"
	case PhaseUnknown:
		// kstatus: readiness cannot be told; the agent keeps retrying.
		ready, reconciling = "Unknown", "True"
	case PhaseSuspended: // neither ready, nor working on it, nor stuck
	}
	reason := p.Reason
	if reason == "" {
		reason = string(p.Phase)
	}
	want := []Condition{
		{Type: "Ready", Status: ready, Reason: reason, Message: p.Message},
		{Type: "Reconciling", Status: reconciling, Reason: reason},
		{Type: "Stalled", Status: stalled, Reason: reason},
	}
	for i := range want {
		want[i].LastTransitionTime = now
		for _, old := range a.conditions {
			if old.Type == want[i].Type && old.Status == want[i].Status {
				want[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	return want
}

// publish completes the status and commits it when its bytes changed. A
// failed push is returned for logging; the cluster work is not blocked by
// it (the status is not on the critical path).
func (a *Agent) publish(ctx context.Context, p *pass) error {
	p.Plan = nil // a refused or invalid desired state shows no plan
	if p.Phase != PhaseRefused && p.Phase != PhaseInvalid {
		p.Plan = a.planStatus()
	}
	p.Workloads = a.workloads
	p.History = a.plans.history
	p.Journal = a.journal.view()
	p.Applied = a.applied
	p.Conditions = a.conditionsFor(p)
	a.conditions = p.Conditions
	a.mu.Lock()
	a.snapshot = p.Status
	a.mu.Unlock()
	a.cfg.Metrics.phase(p.Phase, p.Reason)
	data, err := Render(p.Status)
	if err != nil {
		return fmt.Errorf("render status: %w", err)
	}
	if bytes.Equal(data, a.lastWritten) {
		return a.drain(ctx, p.Journal)
	}
	// The status file never runs ahead of the memory: what it shows (a
	// finished run, what was applied) is in the cluster first.
	if err := a.remember(ctx); err != nil {
		a.log.memoryFailed(err)
	}
	if err := a.fence(ctx); err != nil {
		return err
	}
	msg := commitMessage(a.cfg.ClusterName, p)
	err = a.repo.Write(ctx, a.cfg.StatusPath, data, msg)
	a.cfg.Metrics.gitOp("push", err)
	if err != nil {
		a.cfg.Metrics.statusPushFailed()
		// The status is not on the critical path, so its failure must be
		// visible elsewhere: one Warning Event per distinct reason.
		if r := fault.ReasonOf(err); r != "" && r != a.pushFailure {
			a.pushFailure = r
			a.cluster.Event(ctx, true, r, "the status file cannot be pushed to Git: "+err.Error())
		}
		return err
	}
	a.pushFailure = ""
	a.lastWritten = data
	a.log.statusWritten(p.Phase, p.Reason)
	return a.drain(ctx, p.Journal)
}

// drain marks published what the pushed status holds; the memory forgets
// it then. A failure is logged; the entries are published again.
func (a *Agent) drain(ctx context.Context, pushed []Entry) error {
	if !a.journal.drain(pushed) {
		return nil
	}
	if err := a.remember(ctx); err != nil {
		a.log.memoryFailed(err)
	}
	return nil
}

// commitMessage summarises a status change in one line, plus the plan.
func commitMessage(cluster string, p *pass) string {
	subject := fmt.Sprintf("status(%s): %s", cluster, p.Phase)
	if p.Reason != "" {
		subject += " " + p.Reason
	}
	if p.Message != "" {
		subject += ": " + redact.Text(p.Message, 120)
	}
	var body bytes.Buffer
	if pl := p.Plan; pl != nil {
		fmt.Fprintf(&body, "\n\nPlan %s: %s", pl.ID, pl.Action)
		for i, s := range pl.Steps {
			fmt.Fprintf(&body, "\n  %d/%d %s %s -> %s %s: %s", i+1, len(pl.Steps), s.Type, redact.OrDash(s.From), redact.OrDash(s.To), s.Method, s.State)
		}
	}
	return subject + body.String()
}

// fence checks that this replica may still write.
func (a *Agent) fence(ctx context.Context) error {
	if a.cfg.Fence == nil {
		return nil
	}
	if err := a.cfg.Fence(ctx); err != nil {
		return fmt.Errorf("not writing: %w", err)
	}
	return nil
}

// planDone reports whether every step of a plan has ended.
func planDone(p *PlanStatus) bool {
	for _, s := range p.Steps {
		if s.State == StepPending || s.State == StepRunning {
			return false
		}
	}
	return true
}
