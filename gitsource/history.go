package gitsource

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/storage/memory"
)

// historyLimits keep no blob: history walks need commits and trees only.
var historyLimits = limits{object: 16 << 20, blob: 0, total: 64 << 20}

// history fetches up to HistoryDepth commits behind head into a scratch
// store: commits only (filter tree:0) for ancestry, commits and the trees
// down to the desired file's folder (tree:<depth>) to find who changed it.
// Without server-side filtering the objects come in full, blobs are hashed
// and dropped, and the depth and the caps still bound it.
func (s *Source) history(ctx context.Context, head plumbing.Hash, filter string) (*memory.Storage, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	st := memory.NewStorage()
	r := &reader{s: s, ctx: ctx}
	defer r.close()
	c, err := r.open()
	if err != nil {
		return nil, err
	}
	if c != nil {
		if _, err := fetchV2(ctx, c, fetchRequest{wants: []plumbing.Hash{head}, depth: s.cfg.HistoryDepth, filter: filter}, st, historyLimits); err != nil {
			s.v2http = nil
			return nil, s.readError(ctx, err, "fetch history from")
		}
		return st, nil
	}
	auth, err := s.remote.authMethod()
	if err != nil {
		return nil, s.credentialsError(err)
	}
	sess, err := s.remote.transport.NewUploadPackSession(s.remote.endpoint, auth)
	if err != nil {
		return nil, s.classify(ctx, err, "connect to")
	}
	defer sess.Close()
	adv, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		return nil, s.classify(ctx, err, "list references of")
	}
	req := packp.NewUploadPackRequestFromCapabilities(adv.Capabilities)
	req.Wants = []plumbing.Hash{head}
	req.Depth = packp.DepthCommits(s.cfg.HistoryDepth)
	if err := req.Capabilities.Set(capability.Shallow); err != nil {
		return nil, s.errorf(ReasonGitUnavailable, false, err, "shallow fetch from %s", s.remote.display)
	}
	if adv.Capabilities.Supports(capability.Filter) {
		req.Filter = packp.Filter(filter)
		_ = req.Capabilities.Set(capability.Filter)
	}
	_ = req.Capabilities.Set(capability.NoProgress)
	resp, err := sess.UploadPack(ctx, req)
	if err != nil {
		return nil, s.classify(ctx, err, "fetch history from")
	}
	defer resp.Close()
	if _, err := unpack(packReader(req.Capabilities, resp), st, historyLimits); err != nil {
		return nil, s.readError(ctx, err, "read the history pack from")
	}
	return st, nil
}

// Descends reports whether rev has ancestor in its history (or is it), the
// check that catches a force-pushed branch or a server serving an older
// commit. rev is fetched first (the read that follows needs it anyway), so a
// direct child is answered without more I/O; otherwise up to HistoryDepth
// commits are walked.
func (s *Source) Descends(ctx context.Context, rev, ancestor Revision) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := rev.hash()
	if err != nil {
		return false, s.errorf(ReasonInvalidConfig, true, nil, "%v", err)
	}
	a, err := ancestor.hash()
	if err != nil {
		return false, s.errorf(ReasonInvalidConfig, true, nil, "%v", err)
	}
	if h == a {
		return true, nil
	}
	r := &reader{s: s, ctx: ctx}
	err = r.commit(h)
	r.close()
	if err != nil {
		return false, err
	}
	if c, err := object.GetCommit(s.store, h); err == nil {
		for _, p := range c.ParentHashes {
			if p == a {
				return true, nil
			}
		}
	}
	st, err := s.history(ctx, h, "tree:0")
	if err != nil {
		return false, err
	}
	seen := map[plumbing.Hash]bool{}
	queue := []plumbing.Hash{h}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == a {
			return true, nil
		}
		if seen[cur] {
			continue
		}
		seen[cur] = true
		c, err := object.GetCommit(st, cur)
		if err != nil {
			continue // beyond the fetched depth
		}
		queue = append(queue, c.ParentHashes...)
	}
	return false, nil
}

// Verified is who signed the desired content and the commit that set it.
type Verified struct {
	Signer string
	Commit Revision // the commit that last changed the file
}

// VerifyFile checks the signature of the commit that last changed path as of
// rev (walking first parents): exactly one signature by a trusted key.
func (s *Source) VerifyFile(ctx context.Context, rev Revision, filePath string) (Verified, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Verify == nil {
		return Verified{}, nil
	}
	h, err := rev.hash()
	if err != nil {
		return Verified{}, s.errorf(ReasonInvalidConfig, true, nil, "%v", err)
	}
	p, err := cleanPath(filePath)
	if err != nil {
		return Verified{}, s.errorf(ReasonInvalidConfig, true, nil, "%v", err)
	}
	st, err := s.history(ctx, h, fmt.Sprintf("tree:%d", strings.Count(p, "/")+1))
	if err != nil {
		return Verified{}, err
	}
	setter, err := lastChange(st, h, p, s.cfg.HistoryDepth)
	if err != nil {
		return Verified{}, s.errorf(ReasonSignatureInvalid, true, nil, "%s on %s: %v", p, rev.Branch(), err)
	}
	// The message names the commit that set the file, never the head: the
	// agent's own status commits move the head and must not change it.
	signer, err := s.cfg.Verify.verify(setter)
	if err != nil {
		return Verified{}, s.errorf(ReasonSignatureInvalid, true, nil, "%s on %s: %v", p, rev.Branch(), err)
	}
	if s.cfg.Signer != nil && signer == s.cfg.Signer.identity {
		// The agent's key signs status commits; it never vouches for what
		// the cluster should run, even when it is also a trusted key.
		return Verified{}, s.errorf(ReasonSignatureInvalid, true, nil, "%s on %s was set by commit %s, signed with the agent's own status-signing key (%s), which signs status commits only",
			p, rev.Branch(), short(setter.Hash), signer)
	}
	return Verified{Signer: signer, Commit: newRevision(rev.Branch(), setter.Hash)}, nil
}

// FileChanged returns the commit that last changed path as of rev
// (walking first parents) and when it was committed: how long a fleet file
// has been in force.
func (s *Source) FileChanged(ctx context.Context, rev Revision, filePath string) (Revision, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := rev.hash()
	if err != nil {
		return "", time.Time{}, s.errorf(ReasonInvalidConfig, true, nil, "%v", err)
	}
	p, err := cleanPath(filePath)
	if err != nil {
		return "", time.Time{}, s.errorf(ReasonInvalidConfig, true, nil, "%v", err)
	}
	st, err := s.history(ctx, h, fmt.Sprintf("tree:%d", strings.Count(p, "/")+1))
	if err != nil {
		return "", time.Time{}, err
	}
	c, err := lastChange(st, h, p, s.cfg.HistoryDepth)
	if err != nil {
		return "", time.Time{}, s.errorf(ReasonDesiredFileMissing, true, nil, "%s on %s: %v", p, rev.Branch(), err)
	}
	return newRevision(rev.Branch(), c.Hash), c.Committer.When, nil
}

// lastChange walks first parents from head to the newest commit whose
// version of path differs from its parent's.
func lastChange(st *memory.Storage, head plumbing.Hash, p string, depth int) (*object.Commit, error) {
	c, err := object.GetCommit(st, head)
	if err != nil {
		return nil, err
	}
	for i := 0; i < depth; i++ {
		mine := entryHash(st, c, p)
		if len(c.ParentHashes) == 0 {
			return c, nil // the root commit created it
		}
		parent, err := object.GetCommit(st, c.ParentHashes[0])
		if err != nil {
			return nil, fmt.Errorf("could not find the commit that set it within %d commits", depth)
		}
		if entryHash(st, parent, p) != mine {
			return c, nil
		}
		c = parent
	}
	return nil, fmt.Errorf("could not find the commit that set it within %d commits", depth)
}

func entryHash(st *memory.Storage, c *object.Commit, p string) plumbing.Hash {
	t, err := object.GetTree(st, c.TreeHash)
	if err != nil {
		return plumbing.ZeroHash
	}
	e, err := t.FindEntry(p)
	if err != nil {
		return plumbing.ZeroHash
	}
	return e.Hash
}
