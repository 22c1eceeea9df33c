package gitsource

import (
	"context"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Heads lists with one ls-refs every branch whose name starts with one of
// prefixes (a fleet's status branches: "status/", or exactly the peers'
// branches, so the answer does not grow with the rest of the fleet),
// branch → its head. Over protocol v0 the advertisement of every ref is
// read instead.
func (s *Source) Heads(ctx context.Context, prefixes ...string) (map[string]Revision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	refs, err := s.refs(ctx, prefixes...)
	if err != nil {
		return nil, err
	}
	return revisions(refs, prefixes), nil
}

// revisions keeps the branches under one of prefixes.
func revisions(refs map[string]plumbing.Hash, prefixes []string) map[string]Revision {
	out := map[string]Revision{}
	for name, h := range refs {
		branch, ok := strings.CutPrefix(name, "refs/heads/")
		if ok && hasAnyPrefix(branch, prefixes) && checkBranch(branch) == nil {
			out[branch] = newRevision(branch, h)
		}
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// SignedFile is one file another party vouches for: where it is and whose
// key must have signed the commit.
type SignedFile struct {
	Rev  Revision
	Path string
	Keys *VerifyConfig
}

// SignedRead is what ReadSignedMany found for one file: its bytes and
// signer, or why not (each error as ReadSigned's).
type SignedRead struct {
	Data   []byte
	Signer string
	Err    error
}

// ReadSignedMany reads each file as ReadSigned does, with the commits and
// trees of every revision not yet held fetched in one request (depth 1,
// filter tree:<depth of the deepest path>+1). It fails as a whole only
// when that fetch does; each file's own problem is in its result.
func (s *Source) ReadSignedMany(ctx context.Context, files []SignedFile, max int64) ([]SignedRead, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	if err := s.prefetch(ctx, files); err != nil {
		return nil, err
	}
	out := make([]SignedRead, len(files))
	for i, f := range files {
		out[i].Data, out[i].Signer, out[i].Err = s.readSigned(ctx, f.Rev, f.Path, max, f.Keys)
	}
	return out, nil
}

// prefetch fetches, in one v2 request, the revisions whose commit and root
// tree the store lacks, deep enough for every path. Over v0 it does
// nothing: each read fetches its own.
func (s *Source) prefetch(ctx context.Context, files []SignedFile) error {
	var wants []plumbing.Hash
	depth := 1
	seen := map[plumbing.Hash]bool{}
	for _, f := range files {
		h, err := f.Rev.hash()
		if err != nil || seen[h] || s.hasTree(h) {
			continue
		}
		seen[h] = true
		wants = append(wants, h)
		depth = max(depth, strings.Count(f.Path, "/")+1)
	}
	if len(wants) == 0 {
		return nil
	}
	r := &reader{s: s, ctx: ctx}
	defer r.close()
	c, err := r.open()
	if err != nil || c == nil {
		return err
	}
	return r.fetch(c, fetchRequest{wants: wants, depth: 1, filter: "tree:" + strconv.Itoa(depth+1)})
}

// readSigned is ReadSigned under the lock.
func (s *Source) readSigned(ctx context.Context, rev Revision, filePath string, max int64, keys *VerifyConfig) ([]byte, string, error) {
	data, err := s.readFile(ctx, rev, filePath, max)
	if err != nil {
		return nil, "", err
	}
	h, _ := rev.hash() // readFile checked it
	c, err := object.GetCommit(s.store, h)
	if err != nil {
		return nil, "", s.errorf(ReasonGitUnavailable, false, err, "read commit %s", rev.Short())
	}
	signer, err := keys.verify(c)
	if err != nil {
		return nil, "", s.errorf(ReasonSignatureInvalid, true, nil, "%s on %s: %v", filePath, rev.Branch(), err)
	}
	return data, signer, nil
}
