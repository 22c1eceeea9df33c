package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
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
// version for their soak, read from their committed, signed status files,
// and the ring controls let it go (paused, manual promotion, maxParallel;
// planner.Fleet.Gate). A hop already under way is finished. nil: the gate
// is open (or no fleet).
func (a *Agent) ringGate(ctx context.Context, p planner.Plan, obs *executor.Observation) (*gateResult, error) {
	f := a.src.fleet
	if f == nil || hopUnderWay(p, obs) {
		return nil, nil
	}
	a.wakeAt = time.Time{}
	now := a.cfg.Clock()
	earlier := f.EarlierClusters(a.cfg.ClusterName)
	keys := map[string]string{}
	for _, c := range earlier {
		if k := f.StatusKeys[c]; k != "" {
			keys[c] = k
		}
	}
	reads, err := a.cfg.Peers.PeerStatuses(ctx, keys)
	a.cfg.Metrics.gitOp("read", err)
	if err != nil {
		return nil, err
	}
	peers := map[string]planner.Peer{}
	for _, c := range earlier {
		peers[c] = a.peer(c, keys[c], reads[c], now)
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

// peer is what one earlier cluster's status read means for the gate: the
// peer's own status (signed by the key the fleet file lists for it), or,
// without a status or with one that cannot be proven, unknown: remembered
// from the first time it was seen so, and named with why.
func (a *Agent) peer(cluster, key string, read PeerRead, now time.Time) planner.Peer {
	st, why := peerStatus(cluster, key, read)
	if st == nil {
		delete(a.peersSeen, cluster)
		if a.peersMissing == nil {
			a.peersMissing = map[string]time.Time{}
		}
		if _, ok := a.peersMissing[cluster]; !ok {
			a.peersMissing[cluster] = now
		}
		return planner.Peer{MissingSince: a.peersMissing[cluster], Unknown: why}
	}
	delete(a.peersMissing, cluster)
	p := peerOf(*st)
	p.Current = st.Desired != nil && st.Desired.Digest == a.src.digest
	p.ReadySince = a.soakSince(cluster, p, now)
	return p
}

// peerStatus is the peer's verified status, or why there is none it can
// prove ("" when it has none at all).
func peerStatus(cluster, key string, read PeerRead) (*Status, string) {
	err := read.Err
	switch {
	case key == "":
		return nil, "the fleet file lists no status key for it in spec.statusKeys"
	case fault.ReasonOf(err) == gitsource.ReasonDesiredFileMissing:
		return nil, ""
	case err != nil:
		return nil, redact.Text(err.Error(), 300)
	}
	st, err := ParsePeerStatus(read.Data)
	switch {
	case err != nil:
		return nil, "its status file is unreadable: " + redact.Text(err.Error(), 200)
	case st.Cluster != cluster:
		return nil, fmt.Sprintf("its branch holds the status of cluster %s", redact.Quote(st.Cluster))
	}
	return &st, ""
}

// soakSince is when this agent first saw the peer Succeeded on its
// version for this fleet file (kept in its memory), never a time the peer
// claims; zero while it is not.
func (a *Agent) soakSince(cluster string, p planner.Peer, now time.Time) time.Time {
	if p.Phase != peerSucceeded || !p.Current || p.Version == "" {
		delete(a.peersSeen, cluster)
		return time.Time{}
	}
	seen, ok := a.peersSeen[cluster]
	if !ok || seen.Version != p.Version || seen.Digest != a.src.digest {
		seen = PeerSeen{Version: p.Version, Digest: a.src.digest, Since: NewTimestamp(now)}
		if a.peersSeen == nil {
			a.peersSeen = map[string]PeerSeen{}
		}
		a.peersSeen[cluster] = seen
	}
	return seen.Since.Time
}

// absent stands for the version of a fleet that tears KubeVirt down.
const absent = "(absent)"

const peerSucceeded = string(PhaseSucceeded)

// peerOf is what the ring gate reads from a verified status file: its
// phase and version, and its reason and message cut and made inert (they
// reach this agent's status and events).
func peerOf(st Status) planner.Peer {
	p := planner.Peer{Found: true, Phase: redact.Text(string(st.Phase), 32), Reason: redact.Text(st.Reason, 64), Message: redact.Text(st.Message, 200), Version: st.Observed.Version}
	if !planner.ValidTag(p.Version) {
		p.Version = ""
	}
	if st.Phase == PhaseSucceeded && st.Desired != nil && st.Desired.State == string(planner.StateAbsent) {
		p.Version = absent
	}
	return p
}
