package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Config configures a Source.
type Config struct {
	URL    string
	Branch string // default "main"
	// StatusBranch receives status commits; default Branch.
	StatusBranch string
	Auth         Auth
	// Timeout bounds each network operation. Default 30s.
	Timeout time.Duration
	// MaxPackSize caps any one response from the server. Default 256 MiB.
	MaxPackSize int64
	// Author of status commits. Default "kvgitops <kvgitops@noreply>".
	AuthorName, AuthorEmail string
	// Verify, when set, requires the commit that last set the desired file
	// to be signed by one of its keys.
	Verify *VerifyConfig
	// HistoryDepth bounds how far back history walks go (ancestry,
	// finding the commit that set a file). Default 1000.
	HistoryDepth int
	// PushRetries bounds re-fetch-and-retry rounds of a rejected push.
	// Default 5.
	PushRetries int
}

// Source is one Git repository and branch. It is safe for use by one
// goroutine at a time (the agent's loop); a mutex enforces it.
type Source struct {
	cfg      Config
	remote   *remote
	scrubber scrubber

	mu      sync.Mutex
	store   *memory.Storage
	shallow []plumbing.Hash
	have    plumbing.Hash // newest commit whose tree is in store
	caps    *capability.List
	fetches int
}

// compactEvery drops the in-memory store after that many fetches, so a
// long-running agent does not accumulate every revision's objects.
const compactEvery = 64

// New validates the configuration. It does no network I/O.
func New(cfg Config) (*Source, error) {
	if cfg.Branch == "" {
		cfg.Branch = "main"
	}
	if cfg.StatusBranch == "" {
		cfg.StatusBranch = cfg.Branch
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxPackSize == 0 {
		cfg.MaxPackSize = 256 << 20
	}
	if cfg.AuthorName == "" {
		cfg.AuthorName = "kvgitops"
	}
	if cfg.AuthorEmail == "" {
		cfg.AuthorEmail = "kvgitops@noreply"
	}
	if cfg.HistoryDepth == 0 {
		cfg.HistoryDepth = 1000
	}
	if cfg.PushRetries == 0 {
		cfg.PushRetries = 5
	}
	s := &Source{cfg: cfg, scrubber: newScrubber(cfg.Auth.secrets()...), store: memory.NewStorage()}
	for _, b := range []string{cfg.Branch, cfg.StatusBranch} {
		if !plumbing.ReferenceName("refs/heads/"+b).IsBranch() || strings.Contains(b, "..") || strings.HasPrefix(b, "-") || b == "" {
			return nil, &Error{Reason: ReasonInvalidConfig, Terminal: true, Message: fmt.Sprintf("branch %q is not a valid branch name", b)}
		}
	}
	u, err := checkURL(cfg.URL)
	if err != nil {
		return nil, &Error{Reason: ReasonInvalidConfig, Terminal: true, Message: s.scrub(err.Error())}
	}
	if s.remote, err = newRemote(u, cfg.Auth, cfg); err != nil {
		return nil, &Error{Reason: ReasonInvalidConfig, Terminal: true, Message: s.scrub(err.Error())}
	}
	if cfg.Verify != nil {
		if err := cfg.Verify.validate(); err != nil {
			return nil, &Error{Reason: ReasonInvalidConfig, Terminal: true, Message: err.Error()}
		}
	}
	return s, nil
}

// URL is the repository URL without credentials.
func (s *Source) URL() string { return s.remote.display }

// Branch is the branch the desired file is read from.
func (s *Source) Branch() string { return s.cfg.Branch }

func (s *Source) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// Head learns the branch head with one reference advertisement; no pack is
// downloaded. A missing branch (empty repository) is "" without error.
func (s *Source) Head(ctx context.Context) (Revision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := s.head(ctx, s.cfg.Branch)
	if err != nil || h.IsZero() {
		return "", err
	}
	return newRevision(s.cfg.Branch, h), nil
}

func (s *Source) head(ctx context.Context, branch string) (plumbing.Hash, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	sess, err := s.remote.transport.NewUploadPackSession(s.remote.endpoint, s.remote.auth)
	if err != nil {
		return plumbing.ZeroHash, s.classify(ctx, err, "connect to")
	}
	defer sess.Close()
	adv, err := sess.AdvertisedReferencesContext(ctx)
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return plumbing.ZeroHash, nil
	}
	if err != nil {
		return plumbing.ZeroHash, s.classify(ctx, err, "list references of")
	}
	s.caps = adv.Capabilities
	return refHash(adv, branch), nil
}

func refHash(adv *packp.AdvRefs, branch string) plumbing.Hash {
	if h, ok := adv.References["refs/heads/"+branch]; ok {
		return h
	}
	return plumbing.ZeroHash
}

// fetch makes commit want (and its whole tree) present in the store: a
// depth-1 upload-pack that sends the shallow boundary and the newest commit
// already held, so the server sends only what changed.
func (s *Source) fetch(ctx context.Context, want plumbing.Hash) error {
	if s.hasTree(want) {
		return nil // the commit and its tree are here already
	}
	if s.fetches >= compactEvery {
		s.store, s.shallow, s.have, s.fetches = memory.NewStorage(), nil, plumbing.ZeroHash, 0
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	sess, err := s.remote.transport.NewUploadPackSession(s.remote.endpoint, s.remote.auth)
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
	if !s.have.IsZero() && s.have != want {
		req.Haves = []plumbing.Hash{s.have}
	}
	_ = req.Capabilities.Set(capability.NoProgress)
	resp, err := sess.UploadPack(ctx, req)
	if err != nil {
		return s.classify(ctx, err, "fetch from")
	}
	defer resp.Close()
	if err := packfile.UpdateObjectStorage(s.store, packReader(req.Capabilities, resp)); err != nil {
		return s.classify(ctx, err, "read the pack from")
	}
	s.applyShallow(resp.ShallowUpdate)
	s.have = want
	s.fetches++
	return nil
}

func (s *Source) applyShallow(u packp.ShallowUpdate) {
	out := s.shallow[:0]
	for _, h := range s.shallow {
		unshallowed := false
		for _, x := range u.Unshallows {
			unshallowed = unshallowed || x == h
		}
		if !unshallowed {
			out = append(out, h)
		}
	}
	for _, h := range u.Shallows {
		dup := false
		for _, x := range out {
			dup = dup || x == h
		}
		if !dup {
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

// ReadFile returns the file at path in rev, at most max bytes. The blob is
// read from the object store, never from a checkout: a symlink, directory
// or submodule at path is an error, and so is a path that does not exist.
func (s *Source) ReadFile(ctx context.Context, rev Revision, filePath string, max int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := rev.hash()
	if err != nil {
		return nil, s.errorf(ReasonInvalidConfig, true, nil, "%v", err)
	}
	p, err := cleanPath(filePath)
	if err != nil {
		return nil, s.errorf(ReasonInvalidConfig, true, nil, "%v", err)
	}
	if err := s.fetch(ctx, h); err != nil {
		return nil, err
	}
	entry, err := s.entry(h, p)
	if err != nil {
		return nil, err
	}
	switch entry.Mode {
	case filemode.Regular, filemode.Executable:
	case filemode.Symlink:
		return nil, s.errorf(ReasonNotRegularFile, true, nil, "%s on %s is a symlink; kvgitops reads regular files only", p, s.cfg.Branch)
	default:
		return nil, s.errorf(ReasonNotRegularFile, true, nil, "%s on %s is not a regular file (mode %s)", p, s.cfg.Branch, entry.Mode)
	}
	blob, err := object.GetBlob(s.store, entry.Hash)
	if err != nil {
		return nil, s.errorf(ReasonGitUnavailable, false, err, "read %s in %s", p, rev.Short())
	}
	if blob.Size > max {
		return nil, s.errorf(ReasonTooLarge, true, nil, "%s on %s is %d bytes, over the %d-byte limit", p, s.cfg.Branch, blob.Size, max)
	}
	r, err := blob.Reader()
	if err != nil {
		return nil, s.errorf(ReasonGitUnavailable, false, err, "read %s in %s", p, rev.Short())
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, max))
}

// entry finds path in the tree of commit.
func (s *Source) entry(commit plumbing.Hash, p string) (*object.TreeEntry, error) {
	c, err := object.GetCommit(s.store, commit)
	if err != nil {
		return nil, s.errorf(ReasonGitUnavailable, false, err, "read commit %s", commit)
	}
	tree, err := object.GetTree(s.store, c.TreeHash)
	if err != nil {
		return nil, s.errorf(ReasonGitUnavailable, false, err, "read the tree of %s", commit)
	}
	e, err := tree.FindEntry(p)
	if errors.Is(err, object.ErrEntryNotFound) || errors.Is(err, object.ErrDirectoryNotFound) {
		return nil, s.errorf(ReasonDesiredFileMissing, true, nil, "%s does not exist on branch %s", p, s.cfg.Branch)
	}
	if err != nil {
		return nil, s.errorf(ReasonGitUnavailable, false, err, "find %s", p)
	}
	return e, nil
}

// cleanPath accepts a relative slash path inside the repository.
func cleanPath(p string) (string, error) {
	c := path.Clean(strings.TrimPrefix(p, "./"))
	switch {
	case p == "" || c == "." || strings.HasPrefix(c, "/") || strings.HasPrefix(c, "../") || c == "..":
		return "", fmt.Errorf("path %q must be relative and inside the repository", p)
	case strings.ContainsAny(c, "\x00\\"):
		return "", fmt.Errorf("path %q has forbidden characters", p)
	}
	for _, part := range strings.Split(c, "/") {
		if strings.EqualFold(part, ".git") {
			return "", fmt.Errorf("path %q enters .git", p)
		}
	}
	return c, nil
}
