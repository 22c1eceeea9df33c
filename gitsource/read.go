package gitsource

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/storage/memory"
)

// readLimits bound what a read keeps in memory: commits and trees up to
// 16 MiB each, blobs up to the largest file kvgitops reads (a fleet file,
// 512 KiB), 64 MiB in all per pack. Bigger blobs (a junk file beside the
// desired one, on a server without v2) are hashed and dropped.
var readLimits = limits{object: 16 << 20, blob: 512 << 10, total: 64 << 20}

// ReadFile returns the file at path in rev, at most max bytes. The blob is
// read from the object store, never from a checkout: a symlink, directory
// or submodule at path is an error, and so is a path that does not exist.
// Over protocol v2 only the commit, the trees on the path and the one blob
// are fetched.
func (s *Source) ReadFile(ctx context.Context, rev Revision, filePath string, max int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readFile(ctx, rev, filePath, max)
}

// ReadSigned is ReadFile for content another party vouches for with its
// own key (a fleet peer's status on its own branch): the commit rev names
// must carry exactly one signature, by one of keys. It returns the file
// and who signed it; a missing or foreign signature is a terminal
// SignatureInvalid naming the branch.
func (s *Source) ReadSigned(ctx context.Context, rev Revision, filePath string, max int64, keys *VerifyConfig) ([]byte, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readSigned(ctx, rev, filePath, max, keys)
}

func (s *Source) readFile(ctx context.Context, rev Revision, filePath string, max int64) ([]byte, error) {
	h, err := rev.hash()
	if err != nil {
		return nil, s.errorf(ReasonInvalidConfig, true, nil, "%v", err)
	}
	p, err := cleanPath(filePath)
	if err != nil {
		return nil, s.errorf(ReasonInvalidConfig, true, nil, "%v", err)
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	r := &reader{s: s, ctx: ctx}
	defer r.close()
	entry, err := r.entry(h, p, rev.Branch())
	if err != nil {
		return nil, err
	}
	switch entry.Mode {
	case filemode.Regular, filemode.Executable:
	case filemode.Symlink:
		return nil, s.errorf(ReasonNotRegularFile, true, nil, "%s on %s is a symlink; kvgitops reads regular files only", p, rev.Branch())
	default:
		return nil, s.errorf(ReasonNotRegularFile, true, nil, "%s on %s is not a regular file (mode %s)", p, rev.Branch(), entry.Mode)
	}
	if err := r.object(entry.Hash); err != nil {
		return nil, err
	}
	blob, err := object.GetBlob(s.store, entry.Hash)
	if size, skipped := s.skipped[entry.Hash]; err != nil && (skipped || r.v0) {
		// Dropped while streaming, or filtered out by blob:limit (v0).
		return nil, s.errorf(ReasonTooLarge, true, nil, "%s on %s (%d bytes, 0 if the server filtered it) is over what kvgitops reads (%d bytes)",
			p, rev.Branch(), size, min(max, readLimits.blob))
	}
	if err != nil {
		return nil, s.errorf(ReasonGitUnavailable, false, err, "read %s in %s", p, rev.Short())
	}
	if blob.Size > max {
		return nil, s.errorf(ReasonTooLarge, true, nil, "%s on %s is %d bytes, over the %d-byte limit", p, rev.Branch(), blob.Size, max)
	}
	br, err := blob.Reader()
	if err != nil {
		return nil, s.errorf(ReasonGitUnavailable, false, err, "read %s in %s", p, rev.Short())
	}
	defer br.Close()
	return io.ReadAll(io.LimitReader(br, max))
}

// reader is one read's conversation with the server, opened on first need.
type reader struct {
	s    *Source
	ctx  context.Context
	conn v2conn
	v0   bool
}

func (r *reader) close() {
	if r.conn != nil {
		_ = r.conn.Close()
	}
}

// open returns the v2 conversation, or nil when the server speaks v0.
func (r *reader) open() (v2conn, error) {
	if r.conn != nil || r.v0 {
		return r.conn, nil
	}
	c, err := r.s.v2(r.ctx)
	switch {
	case errors.Is(err, errV0):
		r.v0 = true
		return nil, nil
	case err != nil:
		return nil, r.s.classify(r.ctx, err, "connect to")
	}
	r.conn = c
	return c, nil
}

// fetch runs one v2 fetch into the store.
func (r *reader) fetch(c v2conn, req fetchRequest) error {
	s := r.s
	s.compact()
	u, err := fetchV2(r.ctx, c, req, s.store, readLimits)
	s.fetches++
	for h, n := range u.skipped {
		s.skipped[h] = n
	}
	if err != nil {
		s.v2http = nil
		return s.readError(r.ctx, err, "fetch from")
	}
	return nil
}

// commit makes commit and its root tree present: over v2 the two objects
// alone (filter tree:1), over v0 the whole depth-1 tree, blobs capped.
func (r *reader) commit(h plumbing.Hash) error {
	if r.s.hasTree(h) {
		return nil
	}
	c, err := r.open()
	if err != nil {
		return err
	}
	if c == nil {
		return r.s.fetchV0(r.ctx, h)
	}
	return r.fetch(c, fetchRequest{wants: []plumbing.Hash{h}, depth: 1, filter: "tree:1"})
}

// object makes one tree or blob present (over v0, a fetched commit brought
// everything there is to have).
func (r *reader) object(h plumbing.Hash) error {
	if _, err := r.s.store.EncodedObject(plumbing.AnyObject, h); err == nil {
		return nil
	}
	if _, skipped := r.s.skipped[h]; skipped {
		return nil
	}
	c, err := r.open()
	if err != nil || c == nil {
		return err
	}
	return r.fetch(c, fetchRequest{wants: []plumbing.Hash{h}, filter: "tree:1"})
}

// entry finds path in the tree of commit, fetching the trees on the way.
func (r *reader) entry(commit plumbing.Hash, p, branch string) (*object.TreeEntry, error) {
	s := r.s
	if err := r.commit(commit); err != nil {
		return nil, err
	}
	c, err := object.GetCommit(s.store, commit)
	if err != nil {
		return nil, s.errorf(ReasonGitUnavailable, false, err, "read commit %s", commit)
	}
	missing := func() error {
		return s.errorf(ReasonDesiredFileMissing, true, nil, "%s does not exist on branch %s", p, branch)
	}
	tree := c.TreeHash
	parts := strings.Split(p, "/")
	for i, name := range parts {
		if err := r.object(tree); err != nil {
			return nil, err
		}
		t, err := object.GetTree(s.store, tree)
		if err != nil {
			return nil, s.errorf(ReasonGitUnavailable, false, err, "read a tree of %s", commit)
		}
		var e *object.TreeEntry
		for j := range t.Entries {
			if t.Entries[j].Name == name {
				e = &t.Entries[j]
			}
		}
		switch {
		case e == nil:
			return nil, missing()
		case i == len(parts)-1:
			return e, nil
		case e.Mode != filemode.Dir:
			return nil, missing()
		}
		tree = e.Hash
	}
	return nil, missing()
}

// trees makes the trees on dirs present below commit's root, as far as
// they exist: what a status commit is built on.
func (r *reader) trees(commit plumbing.Hash, dirs []string) error {
	if err := r.commit(commit); err != nil {
		return err
	}
	c, err := object.GetCommit(r.s.store, commit)
	if err != nil {
		return r.s.errorf(ReasonGitUnavailable, false, err, "read commit %s", commit)
	}
	tree := c.TreeHash
	for i := 0; ; i++ {
		if err := r.object(tree); err != nil || i == len(dirs) {
			return err
		}
		t, err := object.GetTree(r.s.store, tree)
		if err != nil {
			return r.s.errorf(ReasonGitUnavailable, false, err, "read a tree of %s", commit)
		}
		e, err := t.FindEntry(dirs[i])
		if err != nil || e.Mode != filemode.Dir {
			return nil // setPath creates it, or refuses a file in the way
		}
		tree = e.Hash
	}
}

// compact drops the in-memory store after compactEvery fetches, so a
// long-running agent does not accumulate every revision's objects.
func (s *Source) compact() {
	if s.fetches >= compactEvery {
		s.store, s.skipped, s.shallow, s.have, s.fetches = memory.NewStorage(), map[plumbing.Hash]int64{}, nil, plumbing.ZeroHash, 0
	}
}

// readError names a pack over the limits as what it is.
func (s *Source) readError(ctx context.Context, err error, what string) error {
	if errors.Is(err, errPackOverLimit) {
		return s.errorf(ReasonRepoTooLarge, true, nil, "%s %s: %v", what, s.remote.display, err)
	}
	return s.classify(ctx, err, what)
}

// fetchV0 is the protocol v0 read: commit want and its whole tree at depth
// 1, telling the server the shallow boundary and the newest commit held;
// blobs over the caps are hashed and dropped as they stream past.
func (s *Source) fetchV0(ctx context.Context, want plumbing.Hash) error {
	s.compact()
	auth, err := s.remote.authMethod()
	if err != nil {
		return s.credentialsError(err)
	}
	sess, err := s.remote.transport.NewUploadPackSession(s.remote.endpoint, auth)
	if err != nil {
		return s.classify(ctx, err, "connect to")
	}
	defer sess.Close()
	caps := s.caps
	if caps == nil || s.remote.endpoint.Protocol == "ssh" {
		// SSH streams the advertisement first on every session.
		adv, err := sess.AdvertisedReferencesContext(ctx)
		if err != nil {
			return s.classify(ctx, err, "list references of")
		}
		caps = adv.Capabilities
		s.caps = caps
	}
	req := packp.NewUploadPackRequestFromCapabilities(caps)
	req.Wants = []plumbing.Hash{want}
	req.Shallows = append([]plumbing.Hash(nil), s.shallow...)
	req.Depth = packp.DepthCommits(1)
	if err := req.Capabilities.Set(capability.Shallow); err != nil {
		return s.errorf(ReasonGitUnavailable, false, err, "shallow fetch from %s", s.remote.display)
	}
	if caps.Supports(capability.Filter) {
		// Blobs kvgitops would never keep are not even sent.
		req.Filter = packp.Filter("blob:limit=" + strconv.FormatInt(readLimits.blob, 10))
		_ = req.Capabilities.Set(capability.Filter)
	}
	if !s.have.IsZero() && s.have != want {
		req.Haves = []plumbing.Hash{s.have}
	}
	_ = req.Capabilities.Set(capability.NoProgress)
	resp, err := sess.UploadPack(ctx, req)
	if err != nil {
		return s.classify(ctx, err, "fetch from")
	}
	defer resp.Close()
	u, err := unpackInto(packReader(req.Capabilities, resp), s.store, readLimits)
	for h, n := range u.skipped {
		s.skipped[h] = n
	}
	if err != nil {
		return s.readError(ctx, err, "read the pack from")
	}
	s.applyShallow(resp.ShallowUpdate)
	s.have = want
	s.fetches++
	return nil
}

func (s *Source) applyShallow(u packp.ShallowUpdate) {
	out := s.shallow[:0]
	for _, h := range s.shallow {
		if !slices.Contains(u.Unshallows, h) {
			out = append(out, h)
		}
	}
	for _, h := range u.Shallows {
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	s.shallow = out
}

func (s *Source) hasTree(commit plumbing.Hash) bool {
	c, err := object.GetCommit(s.store, commit)
	if err != nil {
		return false
	}
	_, err = object.GetTree(s.store, c.TreeHash)
	return err == nil
}
