package gitsource_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

// Canary secrets: none of their forms may appear in any error or log.
const (
	canaryPassword = "canary-Pa55/word+9f8e"
	canaryToken    = "canary-token-3c2b1a"
)

// seen collects every error a test produced, to grep for canaries.
type seen struct {
	mu   sync.Mutex
	errs []string
}

var allErrors seen

func (s *seen) add(err error) error {
	if err != nil {
		s.mu.Lock()
		s.errs = append(s.errs, err.Error())
		s.mu.Unlock()
	}
	return err
}

func TestMain(m *testing.M) {
	code := m.Run()
	// Grep every error the tests produced for the canaries in every form.
	for _, secret := range []string{canaryPassword, canaryToken} {
		for _, form := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret),
			base64.StdEncoding.EncodeToString([]byte(secret)), base64.StdEncoding.EncodeToString([]byte("git:" + secret))} {
			for _, e := range allErrors.errs {
				if strings.Contains(e, form) {
					println("canary secret leaked into an error:", e)
					code = 1
				}
			}
		}
	}
	os.Exit(code)
}

func server(t *testing.T, opts gitserver.Options) *gitserver.Server {
	t.Helper()
	s, err := gitserver.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func user(t *testing.T, s *gitserver.Server) *gitserver.User {
	t.Helper()
	u, err := s.User()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func commit(t *testing.T, u *gitserver.User, path, content string) string {
	t.Helper()
	h, err := u.CommitFile(path, []byte(content), "set "+path)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// secretDir writes a Flux-style Git secret.
func secretDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range files {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func source(t *testing.T, s *gitserver.Server, secret map[string]string, mod ...func(*gitsource.Config)) *gitsource.Source {
	t.Helper()
	if secret == nil {
		secret = map[string]string{}
	}
	secret["ca.crt"] = string(s.CAPEM())
	auth, err := gitsource.LoadAuth(secretDir(t, secret))
	if err != nil {
		t.Fatal(err)
	}
	cfg := gitsource.Config{URL: s.URL(), Auth: auth, Timeout: 10 * time.Second}
	for _, m := range mod {
		m(&cfg)
	}
	src, err := gitsource.New(cfg)
	if err != nil {
		t.Fatal(allErrors.add(err))
	}
	return src
}

func head(t *testing.T, src *gitsource.Source) gitsource.Revision {
	t.Helper()
	rev, err := src.Head(context.Background())
	if err != nil {
		t.Fatal(allErrors.add(err))
	}
	return rev
}

func read(t *testing.T, src *gitsource.Source, rev gitsource.Revision, path string) (string, error) {
	t.Helper()
	b, err := src.ReadFile(context.Background(), rev, path, 64<<10)
	return string(b), allErrors.add(err)
}

func wantReason(t *testing.T, err error, r fault.Reason) {
	t.Helper()
	var e *fault.Error
	if !errors.As(err, &e) || e.Reason != r {
		t.Fatalf("error %v, want reason %s", err, r)
	}
}
