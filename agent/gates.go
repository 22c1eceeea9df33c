package agent

import (
	"fmt"
	"strings"
	"time"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
)

type gateResult struct {
	phase   Phase
	reason  fault.Reason
	message string
}

// gate decides whether the next step may start: manual approval first (a
// human must name this plan), then the maintenance window (a step starts
// only inside a window with room for its timeout; a hop already under way
// in the cluster is finished), then live migrations (nothing changes
// KubeVirt while one runs).
func (a *Agent) gate(d planner.Desired, p planner.Plan, obs *executor.Observation) *gateResult {
	a.wakeAt = time.Time{}
	if d.Approval == planner.ApprovalManual && !a.approved(d, p) {
		msg := fmt.Sprintf("plan %s (%s %s, %d steps) awaits approval: set spec.approvedPlan: %q in %s", a.plans.active.plan.ID,
			p.Action, describe(p), len(a.plans.active.steps), a.plans.active.plan.ID, a.cfg.DesiredPath)
		if d.ApprovedPlan != "" {
			msg = fmt.Sprintf("spec.approvedPlan %s does not match the current plan %s (the cluster or the catalog changed); ", d.ApprovedPlan, a.plans.active.plan.ID) + msg
		}
		return &gateResult{PhaseAwaitingApproval, ReasonAwaitingApproval, msg}
	}
	if w := d.Window; w != nil && !hopUnderWay(p, obs) {
		now := a.cfg.Clock()
		st := w.At(now)
		switch {
		case !st.Open:
			a.wakeAt = st.NextOpen
			return &gateResult{PhaseWaitingForWindow, ReasonOutsideWindow,
				fmt.Sprintf("the next maintenance window opens at %s (%s)", st.NextOpen.UTC().Format(time.RFC3339), w.TimeZone)}
		case st.ClosesAt.Sub(now) < d.HopTimeout:
			a.wakeAt = st.NextOpen
			return &gateResult{PhaseWaitingForWindow, ReasonWindowTooShort,
				fmt.Sprintf("the window closes at %s, too soon for a step with hopTimeout %s; the next one opens at %s",
					st.ClosesAt.UTC().Format(time.RFC3339), d.HopTimeout, st.NextOpen.UTC().Format(time.RFC3339))}
		}
	}
	if len(p.Steps) > 0 && p.Steps[0].Type.ChangesKubeVirt() && len(obs.MigrationsInFlight) > 0 && !hopUnderWay(p, obs) {
		a.wakeAt = a.cfg.Clock().Add(migrationsRecheck)
		return &gateResult{PhaseProgressing, ReasonMigrationsInFlight,
			fmt.Sprintf("%d live migrations are in flight (%s): the next step waits until they finish, as a change of KubeVirt under a running migration can kill its guest (kubevirt#18720)",
				len(obs.MigrationsInFlight), firstNames(obs.MigrationsInFlight, 10))}
	}
	return nil
}

// migrationsRecheck is how soon a step waiting for live migrations looks
// again.
const migrationsRecheck = 10 * time.Second

func firstNames(l []string, n int) string {
	if len(l) <= n {
		return strings.Join(l, ", ")
	}
	return strings.Join(l[:n], ", ") + fmt.Sprintf(" and %d more", len(l)-n)
}

// approved: the desired file names this plan, or the plan the active one
// continues (an approved plan stays approved while it runs).
func (a *Agent) approved(d planner.Desired, p planner.Plan) bool {
	if d.ApprovedPlan == "" {
		return false
	}
	return d.ApprovedPlan == p.ID || a.plans.active != nil && d.ApprovedPlan == a.plans.active.plan.ID && (a.plans.active.plan.ID == p.ID || p.Continues(a.plans.active.plan))
}

// hopUnderWay reports whether the cluster is already moving to the next
// step's version (a hop started before a restart or a window's end).
func hopUnderWay(p planner.Plan, obs *executor.Observation) bool {
	kv := obs.KubeVirt
	if kv == nil || len(p.Steps) == 0 || p.Steps[0].Type != planner.StepUpgrade {
		return false
	}
	return kv.Target == p.Steps[0].To && kv.Observed != kv.Target
}

func describe(p planner.Plan) string {
	switch {
	case p.From != "" && p.To != "":
		return p.From + " -> " + p.To
	case p.To != "":
		return p.To
	}
	return p.From
}
