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
	r := fleetReport{Version: f.KubeVirt.Version, Digest: hex.EncodeToString(sum[:])[:16], Healthy: true}
	if f.KubeVirt.State == planner.StateAbsent {
		r.Version = "(absent)"
	}
	if !since.IsZero() {
		r.Since = &since
	}
	for _, ring := range f.Rings {
		rr := ringReport{Name: ring.Name, Clusters: len(ring.Clusters)}
		if ring.Soak > 0 {
			rr.Soak = planner.Human(ring.Soak)
		}
		var progressing, halted bool
		for _, c := range ring.Clusters {
			d, _, _ := f.DesiredFor(c)
			l := clusterLine{Name: c, Ring: ring.Name, Desired: d.Version}
			if d.State == planner.StateAbsent {
				l.Desired = "(absent)"
			}
			if o, ok := f.Overrides[c]; ok {
				l.Held = "pinned"
				if o.Suspend {
					l.Held = "suspended"
				}
			}
			st := statuses[c]
			acted := st != nil && st.Desired != nil && st.Desired.Digest == r.Digest
			switch {
			case unproven[c] != "":
				l.Phase, l.Message, l.Stale = phaseUnverified, redact.Text(unproven[c], 300), true
			case st == nil:
				l.Phase, l.Stale = phaseNoStatus, since.IsZero() || now.Sub(since) > staleAfter
			default:
				l.Observed, l.Phase, l.Reason, l.Message = word(st.Observed.Version, planner.ValidTag), word(string(st.Phase), isPhase), word(st.Reason, isReason), redact.Text(st.Message, 300)
				for _, cond := range st.Conditions {
					if t := cond.LastTransitionTime.Time; !t.IsZero() && (l.Updated == nil || t.After(*l.Updated)) {
						l.Updated = &t
					}
				}
				l.Stale = !acted && !since.IsZero() && now.Sub(since) > staleAfter
			}
			switch agent.Phase(l.Phase) {
			case agent.PhaseFailed, agent.PhaseRefused, agent.PhaseInvalid:
				halted = true
				r.Healthy = false
				r.Problem = append(r.Problem, c+" is "+l.Phase+" "+l.Reason)
			case agent.PhaseProgressing:
				progressing = true
			case agent.PhaseSucceeded, agent.PhaseSuspended:
				if acted {
					rr.Done++ // it runs what the fleet file asks of it
				}
			case agent.PhaseIdle, agent.PhaseAwaitingApproval, agent.PhaseWaitingForWindow, agent.PhaseWaitingForRing, agent.PhaseUnknown:
			}
			if l.Stale {
				r.Healthy = false
				r.Problem = append(r.Problem, c+" is stale ("+l.Phase+")")
			}
			r.Cluster = append(r.Cluster, l)
		}
		switch {
		case halted:
			rr.State = "Halted"
		case rr.Done == rr.Clusters:
			rr.State = "Done"
		case progressing:
			rr.State = "InProgress"
		default:
			rr.State = "Waiting"
		}
		r.Rings = append(r.Rings, rr)
	}
	return r
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
