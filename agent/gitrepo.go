package agent

import (
	"context"
	"crypto/sha256"
	"errors"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/planner"
)

// GitRepo adapts a gitsource.Source to Repo.
type GitRepo struct {
	Source *gitsource.Source
	// DesiredPath and RisksPath are the files whose setting commit must be
	// signed when the source verifies signatures (status commits are the
	// agent's own, and never decide anything).
	DesiredPath, RisksPath string
	// FollowRewrites accepts a head that does not descend from the last one
	// seen (a deliberate force-push) instead of stalling.
	FollowRewrites bool
	// MaxFileSize caps what Read reads; default planner.MaxDesiredSize (a
	// fleet's agents read a fleet file: planner.MaxFleetSize).
	MaxFileSize int64

	// Per signed path: the bytes last verified and who signed them (the
	// agent's own status commits move the head without touching the file,
	// and must not cost a history walk each), and the commit that set the
	// signed content last accepted.
	verified map[string]verifiedFile
	accepted map[string]string
	peerKeys map[string]*gitsource.VerifyConfig
	// peerReads are the verdicts on peers' heads (cluster → the commit and
	// key they are about): a head that did not move is not read again.
	peerReads map[string]peerVerdict
}

type peerVerdict struct {
	commit, key string
	read        PeerRead
}

type verifiedFile struct {
	sum  [sha256.Size]byte
	from Provenance
}

// Accepted sets the signed commit content at path must move forward from,
// once.
func (g *GitRepo) Accepted(path, setBy string) {
	if g.accepted == nil {
		g.accepted = map[string]string{}
	}
	if g.accepted[path] == "" {
		g.accepted[path] = setBy
	}
}

// signed reports whether path must be set by a signed commit.
func (g *GitRepo) signed(path string) bool {
	return path == g.DesiredPath || g.RisksPath != "" && path == g.RisksPath
}

// Head polls the branch and checks ancestry against since.
func (g *GitRepo) Head(ctx context.Context, since string) (string, error) {
	rev, err := g.Source.Head(ctx)
	if err != nil || rev == "" || since == "" || string(rev) == since || g.FollowRewrites {
		return string(rev), err
	}
	ok, err := g.Source.Descends(ctx, rev, gitsource.Revision(since))
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fault.Stalled(gitsource.ReasonHistoryRewritten, nil,
			"the branch no longer descends from %s, which was already seen (force-push or stale server); nothing is applied until the history is restored or the agent is told to follow it",
			gitsource.Revision(since).Short())
	}
	return string(rev), nil
}

// Read reads a file; when verification is configured and path is the
// desired or the risks file, the commit that set it must be signed by a
// trusted key and descend from the signed commit accepted before there: an
// older signed file brought back (a merge whose first parent is an old
// signed commit, a stale mirror) is refused, whatever path through merges
// leads to it.
func (g *GitRepo) Read(ctx context.Context, rev, path string) ([]byte, Provenance, error) {
	limit := g.MaxFileSize
	if limit == 0 {
		limit = planner.MaxDesiredSize
	}
	data, err := g.Source.ReadFile(ctx, gitsource.Revision(rev), path, limit)
	if err != nil || !g.signed(path) {
		return data, Provenance{}, err
	}
	sum := sha256.Sum256(data)
	if v, ok := g.verified[path]; ok && sum == v.sum {
		return data, v.from, nil
	}
	v, err := g.Source.VerifyFile(ctx, gitsource.Revision(rev), path)
	if err != nil {
		return nil, Provenance{}, err
	}
	if v.Signer == "" {
		return data, Provenance{}, nil // signatures are not verified
	}
	if prev := g.accepted[path]; prev != "" && string(v.Commit) != prev {
		ok, err := g.Source.Descends(ctx, v.Commit, gitsource.Revision(prev))
		if err != nil {
			return nil, Provenance{}, err
		}
		if !ok {
			return nil, Provenance{}, fault.Stalled(gitsource.ReasonStaleSignedContent, nil,
				"%s was set by %s (signed by %s), which does not descend from %s, the signed commit accepted before: "+
					"older signed content brought back (by a merge, or a stale server) is not applied; commit and sign the content again on top of the branch",
				path, v.Commit.Short(), v.Signer, gitsource.Revision(prev).Short())
		}
	}
	if g.accepted == nil {
		g.accepted = map[string]string{}
	}
	if g.verified == nil {
		g.verified = map[string]verifiedFile{}
	}
	from := Provenance{Signer: v.Signer, SetBy: string(v.Commit)}
	g.accepted[path], g.verified[path] = string(v.Commit), verifiedFile{sum: sum, from: from}
	return data, from, nil
}

// ReadStatus reads the status file at the head of the branch status is
// committed to; a missing file or branch reads as DesiredFileMissing.
func (g *GitRepo) ReadStatus(ctx context.Context, path string) ([]byte, error) {
	rev, err := g.Source.HeadOf(ctx, g.Source.StatusBranch())
	if err != nil {
		return nil, err
	}
	if rev == "" {
		return nil, fault.Stalled(gitsource.ReasonDesiredFileMissing, nil, "branch %s has no commits", g.Source.StatusBranch())
	}
	return g.Source.ReadFile(ctx, rev, path, MaxStatusSize)
}

// Write commits the status file; unchanged bytes are not an error.
func (g *GitRepo) Write(ctx context.Context, path string, data []byte, message string) error {
	_, err := g.Source.WriteFile(ctx, path, data, message)
	if errors.Is(err, gitsource.ErrUnchanged) {
		return nil
	}
	return err
}

// PeerStatuses reads the status files of peers (cluster → key) with one
// ls-refs for their branches and one fetch for the heads that moved
// since the last call; a head that did not move costs nothing more, its
// verdict (verified once per commit) kept.
func (g *GitRepo) PeerStatuses(ctx context.Context, peers map[string]string) (map[string]PeerRead, error) {
	out := make(map[string]PeerRead, len(peers))
	if len(peers) == 0 {
		return out, nil
	}
	branches := make([]string, 0, len(peers))
	for cluster := range peers {
		branches = append(branches, PeerBranch(cluster))
	}
	heads, err := g.Source.Heads(ctx, branches...)
	if err != nil {
		return nil, err
	}
	var files []gitsource.SignedFile
	var clusters []string
	for cluster, key := range peers {
		rev, ok := heads[PeerBranch(cluster)]
		if !ok {
			out[cluster] = PeerRead{Err: fault.Stalled(gitsource.ReasonDesiredFileMissing, nil, "there is no branch %s", PeerBranch(cluster))}
			continue
		}
		if v, ok := g.peerReads[cluster]; ok && v.commit == rev.Commit() && v.key == key {
			out[cluster] = v.read
			continue
		}
		keys, err := g.trusted(key)
		if err != nil {
			out[cluster] = PeerRead{Err: fault.Stalled(gitsource.ReasonSignatureInvalid, nil, "its status key in the fleet file cannot be used: %v", err)}
			continue
		}
		files = append(files, gitsource.SignedFile{Rev: rev, Path: PeerStatusPath(cluster), Keys: keys})
		clusters = append(clusters, cluster)
	}
	reads, err := g.Source.ReadSignedMany(ctx, files, MaxStatusSize)
	if err != nil {
		return nil, err
	}
	if g.peerReads == nil {
		g.peerReads = map[string]peerVerdict{}
	}
	for i, r := range reads {
		if r.Err != nil && !fault.Stalls(r.Err) {
			return nil, r.Err
		}
		read := PeerRead{Data: r.Data, Err: r.Err}
		out[clusters[i]] = read
		g.peerReads[clusters[i]] = peerVerdict{commit: files[i].Rev.Commit(), key: peers[clusters[i]], read: read}
	}
	return out, nil
}

// trusted parses a peer's key once.
func (g *GitRepo) trusted(key string) (*gitsource.VerifyConfig, error) {
	if v, ok := g.peerKeys[key]; ok {
		return v, nil
	}
	v, err := gitsource.TrustedKeys(key)
	if err != nil {
		return nil, err
	}
	if g.peerKeys == nil {
		g.peerKeys = map[string]*gitsource.VerifyConfig{}
	}
	g.peerKeys[key] = v
	return v, nil
}

// PeerBranch is the branch a fleet's cluster commits its status to.
func PeerBranch(cluster string) string { return "status/" + cluster }

// PeerStatusPath is where a fleet's cluster commits its status.
func PeerStatusPath(cluster string) string { return "status/" + cluster + ".yaml" }
