package planner

import (
	"fmt"
	"slices"
	"strings"
)

// Upgrade-safety checks of each step (docs/upgrade-safety.md): the
// cluster's Kubernetes against the target's supported range, known upgrade
// risks, and the KubeVirt CR's feature gates against the target's.

// Compatibility says what a check outside the supported (Kubernetes range,
// removed feature gates) does: warn, or refuse.
type Compatibility string

// Compatibility modes.
const (
	CompatibilityWarn   Compatibility = "Warn"
	CompatibilityStrict Compatibility = "Strict"
)

// Drift says what the agent does when the KubeVirt CR or the operator was
// changed outside kvgitops.
type Drift string

// Drift modes.
const (
	DriftReport  Drift = "Report"
	DriftCorrect Drift = "Correct"
)

type rangeBasis int

const (
	supportMatrix rangeBasis = iota // kubevirt/sig-release's support matrix
	testedInCI                      // the release's CI lanes
)

func (b rangeBasis) String() string {
	if b == supportMatrix {
		return "the KubeVirt support matrix (github.com/kubevirt/sig-release, releases/k8s-support-matrix.md)"
	}
	return "the Kubernetes versions its CI tested at release time (no support matrix covers it)"
}

type kubeRange struct {
	min, max kubeVersion
	basis    rangeBasis
}

func (k kubeVersion) String() string { return fmt.Sprintf("%d.%d", k.major, k.minor) }

// kubernetesCheck compares the cluster's Kubernetes with the range of the
// step's target release.
func kubernetesCheck(i int, s Step, kube kubeVersion, known bool, mode Compatibility) Check {
	c := Check{Step: i, Name: CheckKubernetesCompatible, Result: CheckPass}
	t, _ := parseTag(s.To)
	r, ok := kubernetesRanges[t.line().String()]
	switch {
	case !ok:
		c.Result, c.Message = CheckNotChecked, fmt.Sprintf("no Kubernetes range is known for %s", s.To)
	case !known:
		c.Result, c.Message = CheckNotChecked, fmt.Sprintf("the cluster's Kubernetes version is unknown (%s supports %s-%s)", s.To, r.min, r.max)
	case kube.less(r.min) || r.max.less(kube):
		c.Result, c.Reason = CheckWarn, ReasonKubernetesUnsupported
		if mode == CompatibilityStrict {
			c.Result = CheckRefuse
		}
		c.Message = fmt.Sprintf("Kubernetes %s is outside %s's range %s-%s, per %s", kube, s.To, r.min, r.max, r.basis)
	default:
		c.Message = fmt.Sprintf("Kubernetes %s is within %s's range %s-%s", kube, s.To, r.min, r.max)
	}
	return c
}

// riskChecks lists one check per risk the step meets.
func riskChecks(i int, s Step, extra []Risk, accepted []string) []Check {
	var out []Check
	for _, r := range risksFor(s, extra) {
		c := Check{Step: i, Name: CheckKnownRisk + "/" + r.ID, Result: CheckWarn, Reason: ReasonKnownRisk}
		what := r.Summary
		if r.When != "" {
			what = "when " + r.When + ": " + what
		}
		c.Message = fmt.Sprintf("%s (%s, %s): %s; %s", r.ID, strings.ToLower(string(r.Severity)), r.Source, what, r.URL)
		switch {
		case slices.Contains(accepted, r.ID):
			c.Result, c.Reason = CheckPass, ""
			c.Message = "accepted in spec.acceptRisks: " + c.Message
		case r.blocksAlways():
			c.Result = CheckRefuse
		}
		out = append(out, c)
	}
	return out
}

// GateState is what became of a feature gate.
type GateState string

// Feature gate states.
const (
	GateGA           GateState = "GA"           // always on: listing it does nothing
	GateDeprecated   GateState = "Deprecated"   // slated for removal
	GateDiscontinued GateState = "Discontinued" // the feature is gone
	GateRemoved      GateState = "Removed"      // the gate is gone
)

type gateState struct {
	gate  string
	state GateState
	since string
	note  string
}

// gateAt is the newest state of gate as of release tag, if any.
func gateAt(gate, tag string) (gateState, bool) {
	var found gateState
	ok := false
	for _, g := range featureGateStates {
		if g.gate == gate && TagAtLeast(tag, g.since) && (!ok || TagAtLeast(g.since, found.since)) {
			found, ok = g, true
		}
	}
	return found, ok
}

// gateChecks compares the CR's feature gates with the step's target: one
// check per gate whose state at the target differs from its state at the
// start (all states at the first step).
func gateChecks(i int, s Step, gates []string, mode Compatibility, first bool) []Check {
	var out []Check
	for _, g := range gates {
		at, ok := gateAt(g, s.To)
		if !ok {
			continue
		}
		if before, was := gateAt(g, s.From); !first && was && before == at {
			continue
		}
		c := Check{Step: i, Name: CheckFeatureGates + "/" + g, Result: CheckWarn, Reason: ReasonFeatureGateRemoved}
		switch at.state {
		case GateGA:
			c.Reason = ""
			c.Message = fmt.Sprintf("feature gate %s is GA since %s: always on, listing it does nothing; remove it from the KubeVirt CR", g, at.since)
		case GateDeprecated:
			c.Reason = ""
			c.Message = fmt.Sprintf("feature gate %s is deprecated since %s and will be removed", g, at.since)
		default:
			c.Message = fmt.Sprintf("feature gate %s is %s since %s", g, strings.ToLower(string(at.state)), at.since)
			if at.note != "" {
				c.Message += " (" + at.note + ")"
			}
			c.Message += ": what it enabled is gone; remove the gate and what uses it"
			if mode == CompatibilityStrict {
				c.Result = CheckRefuse
			}
		}
		out = append(out, c)
	}
	return out
}

// avoidBlocked routes the path around the intermediate releases an
// unaccepted, unconditional blocker forbids, when the path stays supported:
// the blocked release is dropped when the hop after it can be made
// directly, else replaced by the newest other release of its line that is
// not blocked. The target itself is never replaced.
func avoidBlocked(cur version, hops []version, c *Catalog, extra []Risk, accepted []string) ([]version, []Check) {
	out := make([]version, 0, len(hops))
	var notes []Check
	from := cur
	blocked := func(from, to version) (Risk, bool) {
		return blockedHop(Step{Type: StepUpgrade, From: from.tag, To: to.tag}, extra, accepted)
	}
	for i, h := range hops {
		r, isBlocked := blocked(from, h)
		if !isBlocked || i == len(hops)-1 {
			out = append(out, h)
			from = h
			continue
		}
		next := hops[i+1]
		if next.line() == from.line() || from.line().next(next.line()) {
			notes = append(notes, Check{Step: len(out) + 1, Name: CheckKnownRisk + "/" + r.ID, Result: CheckPass,
				Message: fmt.Sprintf("planned around %s: %s is skipped, %s -> %s is a supported hop (%s)", r.ID, h.tag, from.tag, next.tag, r.URL)})
			continue
		}
		if alt, ok := alternative(from, h, next, c, blocked); ok {
			notes = append(notes, Check{Step: len(out) + 1, Name: CheckKnownRisk + "/" + r.ID, Result: CheckPass,
				Message: fmt.Sprintf("planned around %s: %s instead of %s (%s)", r.ID, alt.tag, h.tag, r.URL)})
			out = append(out, alt)
			from = alt
			continue
		}
		out = append(out, h) // no way around: the preflight refuses it
		from = h
	}
	return out, notes
}

// alternative is the newest stable release of h's line, other than h, that
// follows from, precedes next, and neither hop to or from it is blocked.
func alternative(from, h, next version, c *Catalog, blocked func(from, to version) (Risk, bool)) (version, bool) {
	st := c.stable()
	for i := len(st) - 1; i >= 0; i-- {
		v := st[i]
		if v.line() != h.line() || v.compare(h) == 0 || v.compare(from) <= 0 || v.compare(next) >= 0 {
			continue
		}
		if _, b := blocked(from, v); b {
			continue
		}
		if _, b := blocked(v, next); b {
			continue
		}
		return v, true
	}
	return version{}, false
}
