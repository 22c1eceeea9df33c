package gitserver

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Options configure a Server. With neither Basic nor Token set, anyone may
// fetch and push.
type Options struct {
	Username, Password string // basic auth
	Token              string // bearer token
	Branch             string // default "main"
	// V0Only makes the server speak protocol v0 alone, as servers before
	// git 2.18 (and ones configured so) do: the Git-Protocol header (and,
	// over SSH, GIT_PROTOCOL) is ignored.
	V0Only bool
	// NoFilter turns off partial-clone filters (uploadpack.allowFilter),
	// git's own default.
	NoFilter bool
}

// Server is a smart-HTTP git server over HTTPS on 127.0.0.1.
type Server struct {
	Root   string // folder of bare repositories
	Branch string
	opts   Options
	srv    *httptest.Server
	work   string // a user's working clones live here

	uploadPacks  atomic.Int64
	receivePacks atomic.Int64
	infoRefs     atomic.Int64
	lsRefs       atomic.Int64
	fetches      atomic.Int64
	polls        atomic.Int64
	bytesOut     atomic.Int64

	mu     sync.Mutex
	filter func(w http.ResponseWriter, r *http.Request) bool
	mutate func(r *http.Request, body []byte) []byte
}

// New starts a server with one empty bare repository named "repo.git".
func New(opts Options) (*Server, error) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("git CLI not found (run `make test`, which installs it): %w", err)
	}
	root, err := os.MkdirTemp("", "kvgitops-git-")
	if err != nil {
		return nil, err
	}
	if opts.Branch == "" {
		opts.Branch = "main"
	}
	s := &Server{Root: filepath.Join(root, "repos"), Branch: opts.Branch, opts: opts, work: filepath.Join(root, "work")}
	for _, d := range []string{s.Root, s.work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := s.CreateRepo("repo.git"); err != nil {
		_ = os.RemoveAll(root)
		return nil, err
	}
	backend := &cgi.Handler{
		Path:   gitPath,
		Stderr: io.Discard,                 // git's own messages (e.g. a lost ref race) are expected in tests
		Logger: log.New(io.Discard, "", 0), // a client hanging up mid-answer is too
		Args:   []string{"http-backend"},
		Env: []string{
			"GIT_PROJECT_ROOT=" + s.Root, "GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + root,
		},
	}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if opts.V0Only {
			r.Header.Del("Git-Protocol")
		}
		s.count(r)
		s.mu.Lock()
		filter := s.filter
		s.mu.Unlock()
		if filter != nil && filter(w, r) {
			return
		}
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		s.mu.Lock()
		mutate := s.mutate
		s.mu.Unlock()
		if mutate != nil {
			rec := httptest.NewRecorder()
			backend.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(mutate(r, rec.Body.Bytes()))
			return
		}
		backend.ServeHTTP(&countingWriter{ResponseWriter: w, n: &s.bytesOut}, r)
	}))
	return s, nil
}

// Handler serves the repositories: for a second listener (one inside a
// test's network namespace).
func (s *Server) Handler() http.Handler { return s.srv.Config.Handler }

// Close stops the server and removes its repositories.
func (s *Server) Close() {
	s.srv.Close()
	_ = os.RemoveAll(filepath.Dir(s.Root))
}

// CreateRepo makes an empty bare repository that accepts pushes over HTTP.
func (s *Server) CreateRepo(name string) error {
	dir := filepath.Join(s.Root, name)
	ctx := context.Background()
	if _, err := Git(ctx, s.Root, nil, "init", "--quiet", "--bare", "-b", s.Branch, dir); err != nil {
		return err
	}
	// Pushed packs stay packs, as a hosted repository keeps them, so a fetch
	// reuses their compressed objects instead of deflating loose ones again.
	for _, kv := range [][2]string{{"http.receivepack", "true"}, {"uploadpack.allowFilter", strconv.FormatBool(!s.opts.NoFilter)},
		{"receive.unpackLimit", "1"}} {
		if _, err := Git(ctx, dir, nil, "config", kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// URL is the HTTPS URL of a repository (default "repo.git").
func (s *Server) URL(repo ...string) string {
	name := "repo.git"
	if len(repo) > 0 {
		name = repo[0]
	}
	return s.srv.URL + "/" + name
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return strings.TrimPrefix(s.srv.URL, "https://") }

// CAPEM is the PEM of the certificate clients must trust (Flux's ca.crt).
func (s *Server) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// CertPool trusts the server.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.srv.Certificate())
	return p
}

// Filter installs f in front of git: when it returns true it has answered
// the request itself (a 403 on push, a redirect, a hostile response).
func (s *Server) Filter(f func(w http.ResponseWriter, r *http.Request) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.filter = f
}

// Mutate rewrites what git answers before it is sent (a corrupting proxy);
// nil stops it.
func (s *Server) Mutate(f func(r *http.Request, body []byte) []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mutate = f
}

// Counters of requests by kind, and response bytes served by git.
func (s *Server) UploadPacks() int64  { return s.uploadPacks.Load() }
func (s *Server) ReceivePacks() int64 { return s.receivePacks.Load() }
func (s *Server) InfoRefs() int64     { return s.infoRefs.Load() }
func (s *Server) BytesOut() int64     { return s.bytesOut.Load() }

// LsRefs counts protocol v2 ls-refs commands.
func (s *Server) LsRefs() int64 { return s.lsRefs.Load() }

// Fetches counts requests that can send a pack: v0 upload-pack POSTs and
// v2 fetch commands.
func (s *Server) Fetches() int64 { return s.fetches.Load() }

// Polls counts reference listings: a v0 upload-pack advertisement (which
// lists every ref) or a v2 ls-refs.
func (s *Server) Polls() int64 { return s.polls.Load() }

func (s *Server) count(r *http.Request) {
	v2 := strings.Contains(r.Header.Get("Git-Protocol"), "version=2")
	switch {
	case strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
		s.uploadPacks.Add(1)
		if !v2 {
			s.fetches.Add(1)
			return
		}
		// Peek at the command, then hand git the body untouched.
		head := make([]byte, 32)
		n, _ := io.ReadFull(r.Body, head)
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head[:n]), r.Body), r.Body}
		switch {
		case bytes.Contains(head[:n], []byte("command=ls-refs")):
			s.lsRefs.Add(1)
			s.polls.Add(1)
		case bytes.Contains(head[:n], []byte("command=fetch")):
			s.fetches.Add(1)
		}
	case strings.HasSuffix(r.URL.Path, "/git-receive-pack"):
		s.receivePacks.Add(1)
	case strings.HasSuffix(r.URL.Path, "/info/refs"):
		s.infoRefs.Add(1)
		if !v2 && r.URL.Query().Get("service") == "git-upload-pack" {
			s.polls.Add(1)
		}
	}
}

// SetToken rotates the bearer token the server accepts.
func (s *Server) SetToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.Token = token
}

func (s *Server) authorized(r *http.Request) bool {
	s.mu.Lock()
	token := s.opts.Token
	s.mu.Unlock()
	switch {
	case token != "":
		return r.Header.Get("Authorization") == "Bearer "+token
	case s.opts.Username != "":
		u, p, ok := r.BasicAuth()
		return ok && u == s.opts.Username && p == s.opts.Password
	}
	return true
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
