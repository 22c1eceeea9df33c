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

// Gate decides whether cluster may start towards version: it may when every
// cluster of every earlier ring (overridden ones aside) reports version
// Succeeded for its ring's soak. An earlier cluster Failed or Refused, or
// without a status for StatusMissingAfter, halts it. peers holds the
// earlier rings' clusters by name.
func (f *Fleet) Gate(cluster, version string, peers map[string]Peer, now time.Time) RingGate {
	ring, _, ok := f.find(cluster)
	if !ok {
		return RingGate{Halted: true, Reason: ReasonNotInFleet, Message: fmt.Sprintf("cluster %q is in no ring", cluster)}
	}
	var halts []string
	var waiting RingGate // the first earlier ring not done yet
	for _, r := range f.Rings[:ring] {
		var waits []string
		var recheck time.Time
		for _, c := range r.Clusters {
			if _, held := f.Overrides[c]; held {
				continue
			}
			v := f.judge(c, r, peers[c], version, now)
			if v.halt != "" {
				halts = append(halts, v.halt)
			}
			if v.wait != "" {
				waits = append(waits, v.wait)
			}
			if !v.recheck.IsZero() && (recheck.IsZero() || v.recheck.Before(recheck)) {
				recheck = v.recheck
			}
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

// peerVerdict is what one earlier cluster means for the gate: it halts it,
// makes it wait (until recheck, when only time is missing), or neither.
type peerVerdict struct {
	halt, wait string
	recheck    time.Time
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
		return peerVerdict{halt: fmt.Sprintf("%s (ring %s) is %s %s: %s", c, r.Name, p.Phase, p.Reason, p.Message)}
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

// EarlierClusters are the clusters whose status gates cluster.
func (f *Fleet) EarlierClusters(cluster string) []string {
	ring, _, ok := f.find(cluster)
	if !ok {
		return nil
	}
	var out []string
	for _, r := range f.Rings[:ring] {
		for _, c := range r.Clusters {
			if _, held := f.Overrides[c]; !held {
				out = append(out, c)
			}
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
