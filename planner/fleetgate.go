package planner

import (
	"fmt"
	"strings"
	"time"
)

// Peer is what the ring gate needs from another cluster's committed status.
type Peer struct {
	// Found: a status the caller could verify was read. Without one,
	// MissingSince is when the caller first found none, and Unknown says why
	// a status it found does not count (unsigned, signed by another key,
	// unreadable, too large).
	Found        bool
	MissingSince time.Time
	Unknown      string
	Phase        string // the status file's phase
	Reason       string
	Message      string
	Version      string // observed.version
	// Current: the status is about this fleet file (its desired digest).
	Current bool
	// ReadySince is when the caller first saw the peer Succeeded on Version
	// for this fleet file (never a time the peer claims); zero otherwise.
	ReadySince time.Time
}

// Phases of a peer that halt a rollout.
const (
	peerFailed  = "Failed"
	peerRefused = "Refused"
	peerOK      = "Succeeded"
)

// RingGate is the ring gate's verdict for one cluster.
type RingGate struct {
	Open    bool
	Halted  bool   // an earlier ring failed: nothing moves until it is fixed
	Reason  Reason // ReasonWaitingForRing, ReasonRolloutHalted, ReasonNotInFleet
	Message string
	// RecheckAt is when a soak ends (zero when only a peer's change can
	// open the gate).
	RecheckAt time.Time
}

// Gate decides whether cluster may start towards version: it may when the
// rollout is not paused (spec.paused), every cluster of every earlier ring
// (overridden ones aside) reports version Succeeded for its ring's soak,
// its own ring is promoted to version when its promotion is Manual, and
// fewer of the clusters before it in its ring than its maxParallel are
// still moving. An earlier ring with more Failed or Refused clusters than
// its maxFailures, or a cluster without a status for StatusMissingAfter,
// halts it. peers holds the clusters EarlierClusters names.
func (f *Fleet) Gate(cluster, version string, peers map[string]Peer, now time.Time) RingGate {
	ring, r, ok := f.find(cluster)
	switch {
	case !ok:
		return RingGate{Halted: true, Reason: ReasonNotInFleet, Message: fmt.Sprintf("cluster %q is in no ring", cluster)}
	case f.Paused:
		return RingGate{Reason: ReasonRolloutPaused, Message: "the rollout is paused (spec.paused: true in the fleet file): no hop starts until it is false"}
	}
	if g := f.earlierRings(ring, version, peers, now); !g.Open {
		return g
	}
	if r.Promotion == PromotionManual && f.Promotions[r.Name] != version {
		msg := fmt.Sprintf("ring %s starts on a manual promotion: set spec.promotions.%s: %s in the fleet file", r.Name, r.Name, version)
		if p := f.Promotions[r.Name]; p != "" {
			msg += fmt.Sprintf(" (it is promoted to %s)", p)
		}
		return RingGate{Reason: ReasonWaitingForPromotion, Message: msg}
	}
	return f.slot(cluster, r, version, peers)
}

// earlierRings is the gate of the rings before ring: open when each is
// done (its failures within its budget).
func (f *Fleet) earlierRings(ring int, version string, peers map[string]Peer, now time.Time) RingGate {
	var halts []string
	var waiting RingGate // the first earlier ring not done yet
	for _, r := range f.Rings[:ring] {
		var waits, failed []string
		var recheck time.Time
		for _, c := range f.moving(r) {
			v := f.judge(c, r, peers[c], version, now)
			if v.halt != "" {
				halts = append(halts, v.halt)
			}
			if v.failed != "" {
				failed = append(failed, v.failed)
			}
			if v.wait != "" {
				waits = append(waits, v.wait)
			}
			if !v.recheck.IsZero() && (recheck.IsZero() || v.recheck.Before(recheck)) {
				recheck = v.recheck
			}
		}
		if len(failed) > r.MaxFailures {
			budget := ""
			if r.MaxFailures > 0 {
				budget = fmt.Sprintf(" (%d failed, over ring %s's maxFailures %d)", len(failed), r.Name, r.MaxFailures)
			}
			halts = append(halts, strings.Join(failed, "; ")+budget)
		}
		if len(waits) > 0 && waiting.Reason == "" {
			waiting = RingGate{Reason: ReasonWaitingForRing, Message: "waiting for ring " + r.Name + ": " + strings.Join(waits, "; "), RecheckAt: recheck}
		}
	}
	switch {
	case len(halts) > 0:
		return RingGate{Halted: true, Reason: ReasonRolloutHalted, Message: "rollout halted: " + strings.Join(halts, "; ")}
	case waiting.Reason != "":
		return waiting
	}
	return RingGate{Open: true}
}

// slot is the gate of the ring's maxParallel: cluster moves once fewer
// than that many of the clusters listed before it are still moving (not
// Succeeded on version; a failed one within the ring's maxFailures frees
// its place). The order of the ring's list decides, so no two agents need
// to agree on anything.
func (f *Fleet) slot(cluster string, r Ring, version string, peers map[string]Peer) RingGate {
	moving := f.moving(r)
	limit := r.Parallel(len(moving))
	if limit == 0 {
		return RingGate{Open: true}
	}
	var ahead []string
	failed := 0
	for _, c := range moving {
		if c == cluster {
			break
		}
		p := peers[c]
		switch {
		case p.Found && p.Current && p.Phase == peerOK && p.Version == version:
		case p.Found && p.Current && (p.Phase == peerFailed || p.Phase == peerRefused) && failed < r.MaxFailures:
			failed++
		default:
			ahead = append(ahead, c)
		}
	}
	if len(ahead) < limit {
		return RingGate{Open: true}
	}
	return RingGate{Reason: ReasonWaitingForRing, Message: fmt.Sprintf("ring %s moves %d of its clusters at a time (%s): %s before %s not done yet",
		r.Name, limit, r.Controls(), strings.Join(ahead, ", "), cluster)}
}

// moving are the ring's clusters the fleet moves (not overridden).
func (f *Fleet) moving(r Ring) []string {
	var out []string
	for _, c := range r.Clusters {
		if _, held := f.Overrides[c]; !held {
			out = append(out, c)
		}
	}
	return out
}

// peerVerdict is what one earlier cluster means for the gate: it halts it,
// failed (counted against its ring's budget), makes it wait (until
// recheck, when only time is missing), or neither.
type peerVerdict struct {
	halt, failed, wait string
	recheck            time.Time
}

func (f *Fleet) judge(c string, r Ring, p Peer, version string, now time.Time) peerVerdict {
	switch {
	case !p.Found:
		gone, what := now.Sub(p.MissingSince), "no status file"
		if p.Unknown != "" {
			what = "no status it can prove (" + p.Unknown + ")"
		}
		if gone >= f.StatusMissingAfter {
			return peerVerdict{halt: fmt.Sprintf("%s (ring %s) has had %s for %s (spec.halt.statusMissingAfter %s)", c, r.Name, what, Human(gone), Human(f.StatusMissingAfter))}
		}
		return peerVerdict{wait: fmt.Sprintf("%s has %s yet", c, what)}
	case p.Phase == peerFailed || p.Phase == peerRefused:
		return peerVerdict{failed: fmt.Sprintf("%s (ring %s) is %s %s: %s", c, r.Name, p.Phase, p.Reason, p.Message)}
	case !p.Current:
		return peerVerdict{wait: fmt.Sprintf("%s has not acted on this fleet file yet (%s)", c, p.Phase)}
	case p.Phase != peerOK || p.Version != version || p.ReadySince.IsZero():
		at := p.Version
		if at == "" {
			at = "no version"
		}
		return peerVerdict{wait: fmt.Sprintf("%s is %s at %s, not yet Succeeded on %s", c, p.Phase, at, version)}
	case now.Sub(p.ReadySince) < r.Soak:
		return peerVerdict{wait: fmt.Sprintf("%s on %s for %s of %s", c, version, Human(now.Sub(p.ReadySince)), Human(r.Soak)),
			recheck: p.ReadySince.Add(r.Soak)}
	}
	return peerVerdict{}
}

// EarlierClusters are the clusters whose status gates cluster: every
// cluster of the earlier rings, and, when its ring limits how many move at
// once, those listed before it in its ring (overridden ones aside).
func (f *Fleet) EarlierClusters(cluster string) []string {
	ring, r, ok := f.find(cluster)
	if !ok {
		return nil
	}
	var out []string
	for _, e := range f.Rings[:ring] {
		out = append(out, f.moving(e)...)
	}
	if r.Parallel(len(r.Clusters)) > 0 {
		for _, c := range f.moving(r) {
			if c == cluster {
				break
			}
			out = append(out, c)
		}
	}
	return out
}

// Human writes a duration the way people say it: 3h, 1h30m, 45s.
func Human(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Second {
		return "0s"
	}
	s := d.String()
	for _, z := range []string{"h0m0s", "m0s"} {
		if strings.HasSuffix(s, z) {
			return strings.TrimSuffix(s, z) + z[:1]
		}
	}
	return s
}
