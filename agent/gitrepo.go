package agent

import (
	"context"
	"crypto/sha256"
	"errors"

	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/planner"
)

// GitRepo adapts a gitsource.Source to Repo.
type GitRepo struct {
	Source *gitsource.Source
	// DesiredPath is the file whose setting commit must be signed when the
	// source verifies signatures (status commits are the agent's own).
	DesiredPath string
	// FollowRewrites accepts a head that does not descend from the last one
	// seen (a deliberate force-push) instead of stalling.
	FollowRewrites bool

	// The desired bytes last verified and who signed them: the agent's own
	// status commits move the head without touching the desired file, and
	// must not cost a history walk each.
	verifiedSum [sha256.Size]byte
	verified    Provenance
	// accepted is the commit that set the signed content last accepted.
	accepted string
}

// Accepted sets the signed commit content must move forward from, once.
func (g *GitRepo) Accepted(setBy string) {
	if g.accepted == "" {
		g.accepted = setBy
	}
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
		return "", gitsource.Stall(gitsource.ReasonHistoryRewritten,
			"the branch no longer descends from %s, which was already seen (force-push or stale server); nothing is applied until the history is restored or the agent is told to follow it",
			gitsource.Revision(since).Short())
	}
	return string(rev), nil
}

// Read reads a file; when verification is configured and path is the
// desired file, the commit that set it must be signed by a trusted key and
// descend from the signed commit accepted before: an older signed file
// brought back (a merge whose first parent is an old signed commit, a
// stale mirror) is refused, whatever path through merges leads to it.
func (g *GitRepo) Read(ctx context.Context, rev, path string) ([]byte, Provenance, error) {
	limit := int64(planner.MaxDesiredSize)
	if path != g.DesiredPath {
		limit = MaxStatusSize
	}
	data, err := g.Source.ReadFile(ctx, gitsource.Revision(rev), path, limit)
	if err != nil || path != g.DesiredPath {
		return data, Provenance{}, err
	}
	sum := sha256.Sum256(data)
	if g.verified.Signer != "" && sum == g.verifiedSum {
		return data, g.verified, nil
	}
	v, err := g.Source.VerifyFile(ctx, gitsource.Revision(rev), path)
	if err != nil {
		return nil, Provenance{}, err
	}
	if v.Signer == "" {
		return data, Provenance{}, nil // signatures are not verified
	}
	if g.accepted != "" && string(v.Commit) != g.accepted {
		ok, err := g.Source.Descends(ctx, v.Commit, gitsource.Revision(g.accepted))
		if err != nil {
			return nil, Provenance{}, err
		}
		if !ok {
			return nil, Provenance{}, gitsource.Stall(gitsource.ReasonStaleSignedContent,
				"%s was set by %s (signed by %s), which does not descend from %s, the signed commit accepted before: "+
					"older signed content brought back (by a merge, or a stale server) is not applied; commit and sign the content again on top of the branch",
				path, v.Commit.Short(), v.Signer, gitsource.Revision(g.accepted).Short())
		}
	}
	g.accepted = string(v.Commit)
	g.verifiedSum, g.verified = sum, Provenance{Signer: v.Signer, SetBy: string(v.Commit)}
	return data, g.verified, nil
}

// Write commits the status file; unchanged bytes are not an error.
func (g *GitRepo) Write(ctx context.Context, path string, data []byte, message string) error {
	_, err := g.Source.WriteFile(ctx, path, data, message)
	if errors.Is(err, gitsource.ErrUnchanged) {
		return nil
	}
	return err
}

// PeerStatus reads another cluster's committed status file,
// status/<cluster>.yaml: from its own branch status/<cluster> when there
// is one (the recommended layout), else from the desired file's branch.
// A cluster with no status file yet is an error with reason
// DesiredFileMissing.
func (g *GitRepo) PeerStatus(ctx context.Context, cluster string) ([]byte, error) {
	rev, err := g.Source.HeadOf(ctx, "status/"+cluster)
	if err == nil && rev == "" {
		rev, err = g.Source.Head(ctx)
	}
	if err != nil {
		return nil, err
	}
	if rev == "" {
		return nil, gitsource.Stall(gitsource.ReasonDesiredFileMissing, "the repository has no commits")
	}
	return g.Source.ReadFile(ctx, rev, PeerStatusPath(cluster), MaxStatusSize)
}

// PeerStatusPath is where a fleet's cluster commits its status.
func PeerStatusPath(cluster string) string { return "status/" + cluster + ".yaml" }
