package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
)

// drifted compares the cluster with what kvgitops applied for the current
// desired content (a new desired content is a new decision: no drift is
// measured against the old one). The differences go into the status.
// With spec.drift Report nothing is planned while there are any. With
// Correct, a hand-set spec.imageTag or spec.imageRegistry the operator has
// not acted on is put back; a version the cluster already moved to is
// planned from, so the planner's rules still refuse a downgrade or a
// skipped minor; another operator image is reported only. It reports
// whether the pass stops here, and returns an error only from a write.
func (a *Agent) drifted(ctx context.Context, p *pass, d planner.Desired, obs *executor.Observation) (bool, error) {
	ap := a.applied
	if ap == nil || ap.Digest != a.src.digest || a.plans.active != nil {
		return false, nil
	}
	p.Drift = ap.DriftFrom(obs.Observed)
	if len(p.Drift) == 0 {
		a.driftSaid = ""
		return false, nil
	}
	var what []string
	for _, diff := range p.Drift {
		what = append(what, diff.String())
	}
	msg := "changed outside kvgitops: " + strings.Join(what, "; ")
	if msg != a.driftSaid {
		a.driftSaid = msg
		a.log.driftDetected(msg)
		a.cluster.Event(ctx, true, ReasonDriftDetected, msg)
	}
	if d.Drift != planner.DriftCorrect {
		p.set(PhaseRefused, ReasonDriftDetected, fmt.Sprintf("%s; nothing is applied while spec.drift is Report: commit the desired state you want, or set spec.drift: Correct", msg))
		return true, nil
	}
	if obs.Installed != ap.Version || obs.ImageTag == ap.ImageTag && obs.ImageRegistry == ap.ImageRegistry {
		return false, nil // planned from what runs, or nothing a patch can put back
	}
	if err := a.fence(ctx); err != nil {
		return true, err
	}
	done, err := a.cluster.RestoreCR(ctx, ap.Version, ap.ImageTag, ap.ImageRegistry)
	if err != nil {
		return true, err
	}
	if !done {
		return false, nil // the operator started on the hand-set value: planned from it
	}
	fixed := fmt.Sprintf("spec.imageTag %s and spec.imageRegistry %s put back (spec.drift: Correct) after %s",
		redact.QuoteOrUnset(ap.ImageTag), redact.QuoteOrUnset(ap.ImageRegistry), msg)
	a.cluster.Event(ctx, false, ReasonDriftCorrected, fixed)
	p.set(PhaseProgressing, ReasonDriftCorrected, fixed)
	return true, nil
}
