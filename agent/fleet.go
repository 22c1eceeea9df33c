package agent

import (
	"context"
	"time"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/planner"
)

// parseDesired parses the desired file, or in fleet mode the fleet file
// and this cluster's share of it.
func (a *Agent) parseDesired(data []byte) (planner.Desired, error) {
	a.src.fleet = nil
	if !a.cfg.Fleet {
		return planner.ParseDesired(data)
	}
	f, err := planner.ParseFleet(data)
	if err != nil {
		return planner.Desired{}, err
	}
	d, m, err := f.DesiredFor(a.cfg.ClusterName)
	if err != nil {
		return planner.Desired{}, err
	}
	a.src.fleet, a.src.member = &f, m
	return d, nil
}

// ringGate holds a plan back until the earlier rings of the fleet run its
// version for their soak, read from their committed status files. A hop
// already under way is finished. nil: the gate is open (or no fleet).
func (a *Agent) ringGate(ctx context.Context, p planner.Plan, obs *executor.Observation) (*gateResult, error) {
	f := a.src.fleet
	if f == nil || a.src.member.Ring == 0 || hopUnderWay(p, obs) {
		return nil, nil
	}
	a.wakeAt = time.Time{}
	now := a.cfg.Clock()
	peers := map[string]planner.Peer{}
	for _, c := range f.EarlierClusters(a.cfg.ClusterName) {
		peer, err := a.peer(ctx, c, now)
		if err != nil {
			return nil, err
		}
		peers[c] = peer
	}
	target := p.To
	if target == "" {
		target = absent // a teardown
	}
	g := f.Gate(a.cfg.ClusterName, target, peers, now)
	if g.Open {
		return nil, nil
	}
	a.wakeAt = g.RecheckAt
	return &gateResult{PhaseWaitingForRing, g.Reason, g.Message}, nil
}

// peer reads one earlier cluster's status; a missing file is remembered
// from the first time it was seen missing.
func (a *Agent) peer(ctx context.Context, cluster string, now time.Time) (planner.Peer, error) {
	data, err := a.cfg.Peers.PeerStatus(ctx, cluster)
	a.cfg.Metrics.gitOp("read", err)
	if gitsource.ReasonOf(err) == gitsource.ReasonDesiredFileMissing {
		if a.peersMissing == nil {
			a.peersMissing = map[string]time.Time{}
		}
		if _, ok := a.peersMissing[cluster]; !ok {
			a.peersMissing[cluster] = now
		}
		return planner.Peer{MissingSince: a.peersMissing[cluster]}, nil
	}
	if err != nil {
		return planner.Peer{}, err
	}
	delete(a.peersMissing, cluster)
	st, err := ParseStatus(data)
	if err != nil {
		// An unreadable status cannot say Succeeded: the gate waits.
		return planner.Peer{Found: true, Phase: "Unreadable", Message: err.Error()}, nil
	}
	return peerOf(st), nil
}

// absent stands for the version of a fleet that tears KubeVirt down.
const absent = "(absent)"

// peerOf is what the ring gate reads from a status file.
func peerOf(st Status) planner.Peer {
	p := planner.Peer{Found: true, Phase: string(st.Phase), Reason: st.Reason, Message: st.Message, Version: st.Observed.Version}
	if st.Phase == PhaseSucceeded && st.Desired != nil && st.Desired.State == string(planner.StateAbsent) {
		p.Version = absent
	}
	for _, c := range st.Conditions {
		if c.Type == "Ready" && c.Status == "True" {
			p.ReadySince = c.LastTransitionTime.Time
		}
	}
	return p
}
