package main

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
)

// fleetReport is what `kvgitops fleet status` prints.
type fleetReport struct {
	Version string        `json:"version"` // the fleet's desired version, or "(absent)"
	Digest  string        `json:"digest"`  // of the fleet file, as agents report it
	Since   *time.Time    `json:"since,omitempty"`
	Paused  bool          `json:"paused,omitempty"` // spec.paused: no hop starts
	Rings   []ringReport  `json:"rings"`
	Healthy bool          `json:"healthy"` // nothing Failed, Refused, Invalid or stale
	Problem []string      `json:"problems,omitempty"`
	Cluster []clusterLine `json:"clusters"`
}

type ringReport struct {
	Name     string `json:"name"`
	State    string `json:"state"` // Done, InProgress, Waiting, Halted
	Clusters int    `json:"clusters"`
	Done     int    `json:"done"`
	Soak     string `json:"soak,omitempty"`
	// Controls are the ring's maxParallel, promotion (and whether it is
	// promoted) and maxFailures.
	Controls string `json:"controls,omitempty"`
}

type clusterLine struct {
	Name     string     `json:"name"`
	Ring     string     `json:"ring"`
	Desired  string     `json:"desired"`
	Held     string     `json:"held,omitempty"` // pinned or suspended by an override
	Observed string     `json:"observed,omitempty"`
	Phase    string     `json:"phase"`
	Reason   string     `json:"reason,omitempty"`
	Message  string     `json:"message,omitempty"`
	Updated  *time.Time `json:"updated,omitempty"` // newest condition transition
	Stale    bool       `json:"stale,omitempty"`
}

// Phases of a cluster line beyond the status file's own.
const (
	phaseNoStatus = "NoStatus"
	// phaseUnverified: a status was found that cannot be proven the
	// cluster's own (unsigned, another key, unreadable, too large): nothing
	// of it is shown.
	phaseUnverified = "Unverified"
)

// buildFleetReport reads every cluster's status against the fleet file: a
// cluster is stale when, the fleet file having been in force for
// staleAfter, it has no status file or has not acted on that fleet file.
// Every text taken from a status file is untrusted input even when signed
// (a compromised cluster signs what it likes): phases and reasons must be
// words, versions release tags, messages are cut and made inert.
func buildFleetReport(f planner.Fleet, data []byte, since time.Time, statuses map[string]*agent.Status, unproven map[string]string, now time.Time, staleAfter time.Duration) fleetReport {
	sum := sha256.Sum256(data)
	r := fleetReport{Version: f.KubeVirt.Version, Digest: hex.EncodeToString(sum[:])[:16], Healthy: true, Paused: f.Paused}
	if f.KubeVirt.State == planner.StateAbsent {
		r.Version = "(absent)"
	}
	if !since.IsZero() {
		r.Since = &since
	}
	// overdue: the fleet file has been in force long enough for every
	// cluster to have acted on it.
	overdue := !since.IsZero() && now.Sub(since) > staleAfter
	for _, ring := range f.Rings {
		rr := ringReport{Name: ring.Name, Clusters: len(ring.Clusters), Controls: controlsCell(f, ring)}
		if ring.Soak > 0 {
			rr.Soak = planner.Human(ring.Soak)
		}
		var progressing bool
		failed := 0
		for _, c := range ring.Clusters {
			l, acted := lineOf(f, c, ring.Name, statuses[c], unproven[c], r.Digest, overdue, since.IsZero())
			switch agent.Phase(l.Phase) {
			case agent.PhaseFailed, agent.PhaseRefused, agent.PhaseInvalid:
				failed++
				r.problem(c + " is " + l.Phase + " " + l.Reason)
			case agent.PhaseProgressing:
				progressing = true
			case agent.PhaseSucceeded, agent.PhaseSuspended:
				if acted {
					rr.Done++ // it runs what the fleet file asks of it
				}
			case agent.PhaseIdle, agent.PhaseAwaitingApproval, agent.PhaseWaitingForWindow, agent.PhaseWaitingForRing, agent.PhaseUnknown:
			}
			if l.Stale {
				r.problem(c + " is stale (" + l.Phase + ")")
			}
			r.Cluster = append(r.Cluster, l)
		}
		// Failures within the ring's maxFailures do not halt the rollout.
		rr.State = ringState(failed > ring.MaxFailures, progressing, rr.Done == rr.Clusters)
		r.Rings = append(r.Rings, rr)
	}
	return r
}

// controlsCell is a ring's controls, with whether a manual ring is
// promoted to the fleet's version.
func controlsCell(f planner.Fleet, ring planner.Ring) string {
	c := ring.Controls()
	if ring.Promotion == planner.PromotionManual {
		if p := f.Promotions[ring.Name]; p != "" {
			c += " (promoted to " + p + ")"
		} else {
			c += " (not promoted)"
		}
	}
	return c
}

func (r *fleetReport) problem(p string) {
	r.Healthy = false
	r.Problem = append(r.Problem, p)
}

func ringState(halted, progressing, done bool) string {
	switch {
	case halted:
		return "Halted"
	case done:
		return "Done"
	case progressing:
		return "InProgress"
	}
	return "Waiting"
}

// lineOf is one cluster's line, and whether it acted on this fleet file
// (its status's desired digest is the fleet file's). A cluster is stale
// when its status cannot be proven, when it has none and the fleet file is
// overdue (or its age unknown), or when it has not acted on an overdue one.
func lineOf(f planner.Fleet, c, ring string, st *agent.Status, unproven, digest string, overdue, sinceUnknown bool) (clusterLine, bool) {
	d, _, _ := f.DesiredFor(c)
	l := clusterLine{Name: c, Ring: ring, Desired: d.Version}
	if d.State == planner.StateAbsent {
		l.Desired = "(absent)"
	}
	if o, ok := f.Overrides[c]; ok {
		l.Held = "pinned"
		if o.Suspend {
			l.Held = "suspended"
		}
	}
	acted := st != nil && st.Desired != nil && st.Desired.Digest == digest
	switch {
	case unproven != "":
		l.Phase, l.Message, l.Stale = phaseUnverified, redact.Text(unproven, 300), true
	case st == nil:
		l.Phase, l.Stale = phaseNoStatus, overdue || sinceUnknown
	default:
		l.Observed, l.Phase, l.Reason, l.Message = word(st.Observed.Version, planner.ValidTag), word(string(st.Phase), isPhase), word(st.Reason, isReason), redact.Text(st.Message, 300)
		l.Updated = newestTransition(st.Conditions)
		l.Stale = !acted && overdue
	}
	return l, acted
}

// newestTransition is when a condition last changed.
func newestTransition(conds []agent.Condition) *time.Time {
	var newest *time.Time
	for _, cond := range conds {
		if t := cond.LastTransitionTime.Time; !t.IsZero() && (newest == nil || t.After(*newest)) {
			newest = &t
		}
	}
	return newest
}

// word is s when ok(s), else "?": a field that must be one word.
func word(s string, ok func(string) bool) string {
	if s == "" || ok(s) {
		return s
	}
	return "?"
}

func isPhase(s string) bool {
	switch agent.Phase(s) {
	case agent.PhaseIdle, agent.PhaseProgressing, agent.PhaseSucceeded, agent.PhaseFailed, agent.PhaseInvalid, agent.PhaseRefused,
		agent.PhaseAwaitingApproval, agent.PhaseWaitingForWindow, agent.PhaseWaitingForRing, agent.PhaseSuspended, agent.PhaseUnknown:
		return true
	}
	return false
}

var reasonWord = regexp.MustCompile(`^[A-Z][A-Za-z0-9]{0,63}$`)

func isReason(s string) bool { return reasonWord.MatchString(s) }
