package gitsource_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

func TestReadOverHTTPSWithBasicAuth(t *testing.T) {
	s := server(t, gitserver.Options{Username: "git", Password: canaryPassword})
	u := user(t, s)
	c1 := commit(t, u, "kubevirt.yaml", "v1\n")
	src := source(t, s, map[string]string{"username": "git", "password": canaryPassword})
	rev := head(t, src)
	if rev.Commit() != c1 || rev != gitsource.Revision("main@sha1:"+c1) {
		t.Fatalf("head %s, want main@sha1:%s", rev, c1)
	}
	if got, err := read(t, src, rev, "kubevirt.yaml"); err != nil || got != "v1\n" {
		t.Fatalf("read: %q, %v", got, err)
	}
	// A new commit is read after the next poll.
	c2 := commit(t, u, "kubevirt.yaml", "v2\n")
	rev2 := head(t, src)
	if rev2.Commit() != c2 {
		t.Fatalf("head after a commit %s, want %s", rev2, c2)
	}
	if got, err := read(t, src, rev2, "kubevirt.yaml"); err != nil || got != "v2\n" {
		t.Fatalf("read after a commit: %q, %v", got, err)
	}
}

func TestReadWithBearerToken(t *testing.T) {
	s := server(t, gitserver.Options{Token: canaryToken})
	commit(t, user(t, s), "kubevirt.yaml", "v1\n")
	src := source(t, s, map[string]string{"bearerToken": canaryToken})
	if got, err := read(t, src, head(t, src), "kubevirt.yaml"); err != nil || got != "v1\n" {
		t.Fatalf("read: %q, %v", got, err)
	}
}

// TestRotatedCredentialsAreUsedAtOnce: the mounted Secret is read again
// when its files change (the kubelet rewrites a rotated Secret in place): a
// new token is sent on the next request, without a restart, and scrubbed
// from messages as the old one is.
func TestRotatedCredentialsAreUsedAtOnce(t *testing.T) {
	s := server(t, gitserver.Options{Token: "token-before-rotation-1"})
	commit(t, user(t, s), "kubevirt.yaml", "v1\n")
	dir := secretDir(t, map[string]string{"bearerToken": "token-before-rotation-1", "ca.crt": string(s.CAPEM())})
	src, err := gitsource.New(gitsource.Config{URL: s.URL(), Credentials: gitsource.SecretDir(dir), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := src.Head(ctx); err != nil {
		t.Fatalf("before the rotation: %v", err)
	}
	s.SetToken("token-after-rotation-22")
	_, err = src.Head(ctx)
	wantReason(t, err, gitsource.ReasonAuthenticationFailed)
	if err := os.WriteFile(filepath.Join(dir, "bearerToken"), []byte("token-after-rotation-22"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Head(ctx); err != nil {
		t.Fatalf("after the Secret was rotated: %v", err)
	}
	if _, err := src.ReadFile(ctx, "main@sha1:0000000000000000000000000000000000000000", "kubevirt.yaml", 1024); err != nil && strings.Contains(err.Error(), "token-after-rotation-22") {
		t.Errorf("the rotated token leaks: %v", err)
	}
}

func TestWrongCredentialsAreAuthenticationFailed(t *testing.T) {
	s := server(t, gitserver.Options{Username: "git", Password: "right"})
	commit(t, user(t, s), "kubevirt.yaml", "v1\n")
	for _, secret := range []map[string]string{
		{"username": "git", "password": canaryPassword},
		{"bearerToken": canaryToken},
		{},
	} {
		_, err := source(t, s, secret).Head(context.Background())
		allErrors.add(err)
		wantReason(t, err, gitsource.ReasonAuthenticationFailed)
		if !fault.Stalls(err) {
			t.Errorf("authentication failure should stall: %v", err)
		}
	}
}

func TestUnchangedPollDownloadsNoPack(t *testing.T) {
	s := server(t, gitserver.Options{})
	commit(t, user(t, s), "kubevirt.yaml", "v1\n")
	src := source(t, s, nil)
	rev := head(t, src)
	if _, err := read(t, src, rev, "kubevirt.yaml"); err != nil {
		t.Fatal(err)
	}
	packs, refs := s.Fetches(), s.Polls()
	for i := 0; i < 5; i++ {
		if head(t, src) != rev {
			t.Fatal("head moved")
		}
		if _, err := read(t, src, rev, "kubevirt.yaml"); err != nil {
			t.Fatal(err)
		}
	}
	if s.Fetches() != packs {
		t.Errorf("5 unchanged polls and reads downloaded %d packs, want 0", s.Fetches()-packs)
	}
	if got := s.Polls() - refs; got != 5 {
		t.Errorf("5 polls made %d reference listings, want 5", got)
	}
}

func TestRevertToEarlierContentIsReadCorrectly(t *testing.T) {
	// A depth-1 fetch that assumes the client holds older history would omit
	// the blob of the earlier content; the shallow boundary prevents that.
	s := server(t, gitserver.Options{})
	u := user(t, s)
	commit(t, u, "kubevirt.yaml", "version: v1.7.4\n")
	commit(t, u, "other.txt", "x\n")
	src := source(t, s, nil)
	if got, _ := read(t, src, head(t, src), "kubevirt.yaml"); got != "version: v1.7.4\n" {
		t.Fatalf("first read %q", got)
	}
	commit(t, u, "kubevirt.yaml", "version: v1.8.4\n")
	if got, _ := read(t, src, head(t, src), "kubevirt.yaml"); got != "version: v1.8.4\n" {
		t.Fatalf("second read %q", got)
	}
	commit(t, u, "kubevirt.yaml", "version: v1.7.4\n") // revert
	got, err := read(t, src, head(t, src), "kubevirt.yaml")
	if err != nil || got != "version: v1.7.4\n" {
		t.Fatalf("read after a revert: %q, %v", got, err)
	}
}

func TestNonRegularAndMissingFiles(t *testing.T) {
	s := server(t, gitserver.Options{})
	u := user(t, s)
	commit(t, u, "real.yaml", "spec: {}\n")
	if err := os.Symlink("real.yaml", filepath.Join(u.Dir(), "kubevirt.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(u.Dir(), "passwd.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(u.Dir(), "dir.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(u.Dir(), "dir.yaml", "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"add", "-A"}, {"commit", "-q", "-m", "links"}, {"push", "-q", "origin", "HEAD:main"}} {
		if _, err := u.Git(args...); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, u, "big.yaml", strings.Repeat("#", 70<<10))
	src := source(t, s, nil)
	rev := head(t, src)
	for path, reason := range map[string]fault.Reason{
		"kubevirt.yaml": gitsource.ReasonNotRegularFile,
		"passwd.yaml":   gitsource.ReasonNotRegularFile,
		"dir.yaml":      gitsource.ReasonNotRegularFile,
		"missing.yaml":  gitsource.ReasonDesiredFileMissing,
		"big.yaml":      gitsource.ReasonTooLarge,
	} {
		_, err := read(t, src, rev, path)
		wantReason(t, err, reason)
		if !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q does not name the path", path, err)
		}
	}
	for _, bad := range []string{"../etc/passwd", "/etc/passwd", ".git/config", "a/../../b"} {
		if _, err := read(t, src, rev, bad); err == nil {
			t.Errorf("path %q accepted", bad)
		}
	}
}

func TestEmptyRepository(t *testing.T) {
	s := server(t, gitserver.Options{})
	if rev := head(t, source(t, s, nil)); rev != "" {
		t.Errorf("empty repository head %q, want empty", rev)
	}
}

func TestURLsAreCheckedBeforeGoGit(t *testing.T) {
	for _, raw := range []string{
		"file:///tmp/repo.git", "git://example.com/repo.git", "ext::sh -c touch% /tmp/pwned", "http://example.com/repo.git",
		"https://user:" + canaryPassword + "@example.com/repo.git", "-uhttps://example.com", "ssh://git:pw@example.com/repo.git",
		"/local/path", "https://example.com/repo.git?x=1",
	} {
		_, err := gitsource.New(gitsource.Config{URL: raw})
		allErrors.add(err)
		if fault.ReasonOf(err) != gitsource.ReasonInvalidConfig {
			t.Errorf("URL %q: %v, want InvalidConfig", raw, err)
		}
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	var leaked []string
	other := server(t, gitserver.Options{})
	other.Filter(func(w http.ResponseWriter, r *http.Request) bool {
		leaked = append(leaked, r.Header.Get("Authorization"))
		return false
	})
	s := server(t, gitserver.Options{Username: "git", Password: canaryPassword})
	s.Filter(func(w http.ResponseWriter, r *http.Request) bool {
		http.Redirect(w, r, other.URL()+"/info/refs?service=git-upload-pack", http.StatusFound)
		return true
	})
	_, err := source(t, s, map[string]string{"username": "git", "password": canaryPassword}).Head(context.Background())
	allErrors.add(err)
	if err == nil {
		t.Fatal("a redirected repository was followed")
	}
	if len(leaked) > 0 {
		t.Errorf("credentials reached the redirect target: %v", leaked)
	}
}
