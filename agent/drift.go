package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/kvgitops/kvgitops/fault"
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
// skipped minor; another operator image is reported only.
func (a *Agent) drifted(ctx context.Context, p *pass) (verdict, error) {
	ap := a.applied
	if ap == nil || ap.Digest != a.src.digest || a.plans.active != nil {
		return goOn, nil
	}
	p.Drift = ap.DriftFrom(p.obs.Observed)
	if c := p.desired.KubeVirtConfig; c != nil && p.obs.KubeVirt != nil {
		// kvgitops left the CR with these settings (the plan was done).
		p.Drift = append(p.Drift, c.Differences(p.obs.KubeVirtSpec)...)
	}
	if len(p.Drift) == 0 {
		a.driftSaid = ""
		return goOn, nil
	}
	msg := a.announceDrift(ctx, p.Drift)
	if p.desired.Drift != planner.DriftCorrect {
		p.set(PhaseRefused, ReasonDriftDetected, fmt.Sprintf("%s; nothing is applied while spec.drift is Report: commit the desired state you want, or set spec.drift: Correct", msg))
		return done, nil
	}
	if o := p.obs; o.Installed != ap.Version || o.ImageTag == ap.ImageTag && o.ImageRegistry == ap.ImageRegistry {
		return goOn, nil // planned from what runs, or nothing a patch can put back
	}
	return a.correct(ctx, p, *ap, msg)
}

// announceDrift says what changed, once per change (log and Event).
func (a *Agent) announceDrift(ctx context.Context, drift []planner.Difference) string {
	var what []string
	for _, diff := range drift {
		what = append(what, diff.String())
	}
	msg := "changed outside kvgitops: " + strings.Join(what, "; ")
	if msg != a.driftSaid {
		a.driftSaid = msg
		a.log.driftDetected(msg)
		a.cluster.Event(ctx, true, ReasonDriftDetected, msg)
	}
	return msg
}

// correct puts the applied image tag and registry back, with the memory
// that says what was applied written first.
func (a *Agent) correct(ctx context.Context, p *pass, ap planner.Applied, msg string) (verdict, error) {
	if err := a.fence(ctx); err != nil {
		return silent, err
	}
	if err := a.remember(ctx); err != nil {
		return silent, err
	}
	restored, err := a.cluster.RestoreCR(ctx, ap.Version, ap.ImageTag, ap.ImageRegistry)
	switch {
	case fault.Stalls(err): // a value kvgitops never writes: said, not retried
		p.set(PhaseRefused, fault.ReasonOf(err), "drift not corrected: "+err.Error())
		return done, nil
	case err != nil:
		return silent, err
	}
	if !restored {
		return goOn, nil // the operator started on the hand-set value: planned from it
	}
	fixed := fmt.Sprintf("spec.imageTag %s and spec.imageRegistry %s put back (spec.drift: Correct) after %s",
		redact.QuoteOrUnset(ap.ImageTag), redact.QuoteOrUnset(ap.ImageRegistry), msg)
	a.cluster.Event(ctx, false, ReasonDriftCorrected, fixed)
	p.set(PhaseProgressing, ReasonDriftCorrected, fixed)
	return verdict{stop: true, publish: true, again: true}, nil
}
