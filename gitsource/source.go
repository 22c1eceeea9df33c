package gitsource

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/kvgitops/kvgitops/fault"
)

// Config configures a Source.
type Config struct {
	URL    string
	Branch string // default "main"
	// StatusBranch receives status commits; default Branch.
	StatusBranch string
	// Credentials, when set, are read for every request or connection
	// (SecretDir); else Auth is used as it is.
	Credentials Credentials
	Auth        Auth
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
	// Signer, when set, signs every status commit.
	Signer *CommitSigner
}

// Source is one Git repository and branch. It is safe for use by one
// goroutine at a time (the agent's loop); a mutex enforces it.
type Source struct {
	cfg    Config
	remote *remote

	mu      sync.Mutex
	store   *memory.Storage
	skipped map[plumbing.Hash]int64 // blobs seen but not kept (over the caps)
	shallow []plumbing.Hash
	have    plumbing.Hash // newest commit whose tree is in store (v0)
	caps    *capability.List
	fetches int

	pushGuard func(context.Context) error

	protocol int     // 0 not yet known, 1 v0 only, 2 v2
	v2http   *v2caps // the HTTP server's v2 capabilities, once probed
}

// compactEvery drops the in-memory store after that many fetches, so a
// long-running agent does not accumulate every revision's objects.
const compactEvery = 64

// New validates the configuration. It does no network I/O.
func New(cfg Config) (*Source, error) {
	cfg.defaults()
	s := &Source{cfg: cfg, store: memory.NewStorage(), skipped: map[plumbing.Hash]int64{}}
	creds := cfg.Credentials
	if creds == nil {
		creds = Static(cfg.Auth)
	}
	for _, b := range []string{cfg.Branch, cfg.StatusBranch} {
		if err := checkBranch(b); err != nil {
			return nil, err
		}
	}
	u, err := checkURL(cfg.URL)
	if err != nil {
		return nil, s.errorf(ReasonInvalidConfig, true, nil, "%s", err.Error())
	}
	if s.remote, err = newRemote(u, creds, cfg); err != nil {
		return nil, s.errorf(ReasonInvalidConfig, true, nil, "%s", err.Error())
	}
	if cfg.Verify != nil {
		if err := cfg.Verify.validate(); err != nil {
			return nil, fault.Stalled(ReasonInvalidConfig, nil, "%s", err.Error())
		}
	}
	return s, nil
}

func (cfg *Config) defaults() {
	for _, d := range []struct {
		field *string
		value string
	}{{&cfg.Branch, "main"}, {&cfg.AuthorName, "kvgitops"}, {&cfg.AuthorEmail, "kvgitops@noreply"}} {
		if *d.field == "" {
			*d.field = d.value
		}
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
	if cfg.HistoryDepth == 0 {
		cfg.HistoryDepth = 1000
	}
	if cfg.PushRetries == 0 {
		cfg.PushRetries = 5
	}
}

// StatusBranch is the branch status commits go to.
func (s *Source) StatusBranch() string { return s.cfg.StatusBranch }

// URL is the repository URL without credentials.
func (s *Source) URL() string { return s.remote.display }

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

// HeadOf is Head for another branch of the same repository (a fleet's
// agents read each other's status branches). A missing branch is "".
func (s *Source) HeadOf(ctx context.Context, branch string) (Revision, error) {
	if err := checkBranch(branch); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := s.head(ctx, branch)
	if err != nil || h.IsZero() {
		return "", err
	}
	return newRevision(branch, h), nil
}

func checkBranch(b string) error {
	if !plumbing.ReferenceName("refs/heads/"+b).IsBranch() || strings.Contains(b, "..") || strings.HasPrefix(b, "-") || b == "" {
		return fault.Stalled(ReasonInvalidConfig, nil, "branch %q is not a valid branch name", b)
	}
	return nil
}

func (s *Source) head(ctx context.Context, branch string) (plumbing.Hash, error) {
	refs, err := s.refs(ctx, branch)
	return refs["refs/heads/"+branch], err
}

// refs lists the branches whose names start with one of prefixes: one v2
// ls-refs, or the v0 advertisement of every ref, filtered.
func (s *Source) refs(ctx context.Context, prefixes ...string) (map[string]plumbing.Hash, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	c, err := s.v2(ctx)
	switch {
	case err == nil:
		defer c.Close()
		refs, err := lsRefs(ctx, c, prefixes...)
		if err != nil {
			s.v2http = nil
			return nil, s.classify(ctx, err, "list references of")
		}
		return refs, nil
	case !errors.Is(err, errV0):
		return nil, s.classify(ctx, err, "connect to")
	}
	adv, err := s.advertised(ctx)
	if err != nil || adv == nil {
		return nil, err
	}
	refs := map[string]plumbing.Hash{}
	for name, h := range adv.References {
		if branch, ok := strings.CutPrefix(name, "refs/heads/"); ok && hasAnyPrefix(branch, prefixes) {
			refs[name] = h
		}
	}
	return refs, nil
}

// advertised is the v0 advertisement of every ref (nil for an empty
// repository).
func (s *Source) advertised(ctx context.Context) (*packp.AdvRefs, error) {
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
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return nil, nil
	}
	if err != nil {
		return nil, s.classify(ctx, err, "list references of")
	}
	s.caps = adv.Capabilities
	return adv, nil
}

func refHash(adv *packp.AdvRefs, branch string) plumbing.Hash {
	if h, ok := adv.References["refs/heads/"+branch]; ok {
		return h
	}
	return plumbing.ZeroHash
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
