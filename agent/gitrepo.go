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
	verifiedBy  string
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
		return "", &gitsource.Error{Reason: gitsource.ReasonHistoryRewritten, Terminal: true,
			Message: "the branch no longer descends from " + gitsource.Revision(since).Short() +
				", which was already seen (force-push or stale server); nothing is applied until the history is restored or the agent is told to follow it"}
	}
	return string(rev), nil
}

// Read reads a file; when verification is configured and path is the
// desired file, the commit that set it must be signed by a trusted key.
func (g *GitRepo) Read(ctx context.Context, rev, path string) ([]byte, string, error) {
	limit := int64(planner.MaxDesiredSize)
	if path != g.DesiredPath {
		limit = maxStatusSize
	}
	data, err := g.Source.ReadFile(ctx, gitsource.Revision(rev), path, limit)
	if err != nil || path != g.DesiredPath {
		return data, "", err
	}
	sum := sha256.Sum256(data)
	if g.verifiedBy != "" && sum == g.verifiedSum {
		return data, g.verifiedBy, nil
	}
	signer, err := g.Source.VerifyFile(ctx, gitsource.Revision(rev), path)
	if err != nil {
		return nil, "", err
	}
	g.verifiedSum, g.verifiedBy = sum, signer
	return data, signer, nil
}

// Write commits the status file; unchanged bytes are not an error.
func (g *GitRepo) Write(ctx context.Context, path string, data []byte, message string) error {
	_, err := g.Source.WriteFile(ctx, path, data, message)
	if errors.Is(err, gitsource.ErrUnchanged) {
		return nil
	}
	return err
}
