package gitsource_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

// TestACorruptPackIsACleanError (RELIABILITY B36): a byte flipped inside
// the pack of a fetch answer is a clean, retryable error within the
// deadline, and it poisons nothing: the next read, uncorrupted, is right.
func TestACorruptPackIsACleanError(t *testing.T) {
	for _, v0 := range []bool{false, true} {
		s := server(t, gitserver.Options{V0Only: v0})
		u := user(t, s)
		commit(t, u, "kubevirt.yaml", strings.Repeat("desired state\n", 200))
		src := source(t, s, nil)
		rev := head(t, src)
		corrupted := 0
		s.Mutate(func(r *http.Request, body []byte) []byte {
			if strings.HasSuffix(r.URL.Path, "/git-upload-pack") && bytes.Contains(body, []byte("PACK")) {
				out := bytes.Clone(body)
				out[len(out)-30] ^= 0xff // inside the pack data or its checksum
				corrupted++
				return out
			}
			return body
		})
		_, err := read(t, src, rev, "kubevirt.yaml")
		if err == nil || fault.Stalls(err) || corrupted == 0 {
			t.Fatalf("v0 %t: a corrupt pack read as %v (corrupted %d answers), want a retryable error", v0, err, corrupted)
		}
		// Found corrupt when it is read, not left to run into the deadline.
		if strings.Contains(err.Error(), "timed out") {
			t.Errorf("v0 %t: the corrupt pack ran into the deadline instead of failing as corrupt: %v", v0, err)
		}
		s.Mutate(nil)
		if got, err := read(t, src, rev, "kubevirt.yaml"); err != nil || got != strings.Repeat("desired state\n", 200) {
			t.Errorf("v0 %t: the read after the corruption: %v", v0, err)
		}
	}
}

// TestAGiantRepository (B37): a depth-1 pack over the byte cap is
// RepoTooLarge (terminal, named) from a v0 server; over v2 the same
// repository costs one file.
func TestAGiantRepository(t *testing.T) {
	files := map[string][]byte{"kubevirt.yaml": []byte("v1\n")}
	for i := range 3 {
		b := make([]byte, 512<<10)
		_, _ = rand.Read(b) // incompressible
		files["blobs/"+itoa(i)+".bin"] = b
	}
	for _, tt := range []struct {
		name    string
		opts    gitserver.Options
		tooMany bool
	}{
		{"v0 without filters", gitserver.Options{V0Only: true, NoFilter: true}, true},
		{"v2 without filters", gitserver.Options{NoFilter: true}, true},
		{"v0 with blob filters", gitserver.Options{V0Only: true}, false},
		{"v2 path-only", gitserver.Options{}, false},
	} {
		s := server(t, tt.opts)
		if _, err := user(t, s).CommitFiles("giant", files); err != nil {
			t.Fatal(err)
		}
		src := source(t, s, nil, func(c *gitsource.Config) { c.MaxPackSize = 1 << 20 })
		got, err := read(t, src, head(t, src), "kubevirt.yaml")
		switch {
		case tt.tooMany && (fault.ReasonOf(err) != gitsource.ReasonRepoTooLarge || !strings.Contains(err.Error(), "1048576")):
			t.Errorf("%s: a 1.5 MiB depth-1 pack under a 1 MiB cap: %v, want RepoTooLarge naming the cap", tt.name, err)
		case !tt.tooMany && (err != nil || got != "v1\n"):
			t.Errorf("%s: the same repository read %q, %v", tt.name, got, err)
		}
	}
}

// TestSubmodulesAreNotFollowed (B38): a submodule beside the desired file
// changes nothing; a submodule at the desired path is not a regular file,
// and nothing is fetched through it.
func TestSubmodulesAreNotFollowed(t *testing.T) {
	s := server(t, gitserver.Options{})
	u := user(t, s)
	target := commit(t, u, "kubevirt.yaml", "v1\n")
	if _, err := u.CommitFiles("submodule", map[string][]byte{".gitmodules": []byte("[submodule \"sub\"]\n\tpath = sub\n\turl = https://127.0.0.1:1/other.git\n")}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"update-index", "--add", "--cacheinfo", "160000," + target + ",sub"}, {"commit", "-q", "-m", "gitlink"}, {"push", "-q", "origin", "HEAD:main"}} {
		if out, err := u.Git(args...); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	src := source(t, s, nil)
	rev := head(t, src)
	if got, err := read(t, src, rev, "kubevirt.yaml"); err != nil || got != "v1\n" {
		t.Fatalf("beside a submodule: %q %v", got, err)
	}
	_, err := read(t, src, rev, "sub")
	wantReason(t, err, gitsource.ReasonNotRegularFile)
	_, err = read(t, src, rev, "sub/kubevirt.yaml")
	wantReason(t, err, gitsource.ReasonDesiredFileMissing)
	if _, err := src.WriteFile(context.Background(), "status/c.yaml", []byte("x\n"), "status"); err != nil {
		t.Errorf("a status commit beside a submodule: %v", err)
	}
}
