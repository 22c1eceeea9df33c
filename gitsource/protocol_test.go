package gitsource_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

// TestProtocolV2AndTheV0Fallback runs every operation over smart HTTP and
// SSH, against a server that speaks protocol v2 and one that speaks v0
// only, with the desired file two folders deep.
func TestProtocolV2AndTheV0Fallback(t *testing.T) {
	const desired = "clusters/prod/kubevirt.yaml"
	for _, v0 := range []bool{false, true} {
		for _, scheme := range []string{"https", "ssh"} {
			name := scheme + "/v2"
			if v0 {
				name = scheme + "/v0 only"
			}
			t.Run(name, func(t *testing.T) {
				s := server(t, gitserver.Options{V0Only: v0})
				u := user(t, s)
				if _, err := u.CommitFiles("layout", map[string][]byte{
					desired: []byte("one\n"), "clusters/prod/other.yaml": []byte("x\n"), "README.md": []byte("r\n"),
				}); err != nil {
					t.Fatal(err)
				}
				src := source(t, s, nil)
				if scheme == "ssh" {
					x, err := s.StartSSH()
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(x.Close)
					if src, err = sshSource(t, x, x.KnownHosts()); err != nil {
						t.Fatal(err)
					}
				}
				ctx := context.Background()
				lsRefs := s.LsRefs()
				first := head(t, src)
				if got, err := read(t, src, first, desired); err != nil || got != "one\n" {
					t.Fatalf("read: %q %v", got, err)
				}
				if _, err := src.WriteFile(ctx, "status/prod.yaml", []byte("status\n"), "status"); err != nil {
					t.Fatalf("push: %v", err)
				}
				commit(t, u, desired, "two\n")
				next := head(t, src)
				if ok, err := src.Descends(ctx, next, first); err != nil || !ok {
					t.Fatalf("descends: %v %v", ok, err)
				}
				if got, err := read(t, src, next, desired); err != nil || got != "two\n" {
					t.Fatalf("read after a change: %q %v", got, err)
				}
				if got, err := read(t, src, next, "status/prod.yaml"); err != nil || got != "status\n" {
					t.Fatalf("the agent's own status file: %q %v", got, err)
				}
				_, err := read(t, src, next, "clusters/prod/missing.yaml")
				wantReason(t, err, gitsource.ReasonDesiredFileMissing)

				want := 2
				if v0 {
					want = 1
				}
				if got := src.Protocol(); got != want {
					t.Errorf("settled on protocol %d, want %d", got, want)
				}
				if n := s.LsRefs() - lsRefs; scheme == "https" && (n > 0) == v0 {
					t.Errorf("the server answered %d ls-refs commands", n)
				}
			})
		}
	}
}

// TestPathOnlyReads: over v2 a read after a change fetches the commit, the
// trees on the path and the one blob, nothing else: the bytes on the wire
// do not grow with the files beside it.
func TestPathOnlyReads(t *testing.T) {
	s := server(t, gitserver.Options{})
	u := user(t, s)
	files := map[string][]byte{"kubevirt.yaml": []byte("one\n")}
	for i := range 400 {
		files[filepath.Join("apps", "app"+string(rune('a'+i%26)), "file"+itoa(i)+".yaml")] = []byte(randomText(i, 4096))
	}
	if _, err := u.CommitFiles("many files", files); err != nil {
		t.Fatal(err)
	}
	src := source(t, s, nil)
	if _, err := read(t, src, head(t, src), "kubevirt.yaml"); err != nil {
		t.Fatal(err)
	}
	commit(t, u, "kubevirt.yaml", "two\n")
	before := s.BytesOut()
	if got, err := read(t, src, head(t, src), "kubevirt.yaml"); err != nil || got != "two\n" {
		t.Fatalf("read: %q %v", got, err)
	}
	// 400 files of 4 KiB each are 1.6 MB; the commit, the root tree and
	// the blob are well under 2 KiB, answers' framing included.
	if n := s.BytesOut() - before; n > 4096 {
		t.Errorf("a read after one change moved %d bytes, want the commit, root tree and blob only (< 4 KiB)", n)
	}
}

// TestJunkBesideTheDesiredFile is the attack of a Git writer committing a
// large zero-filled file (a few hundred KiB on the wire) beside the desired
// file: whatever the server speaks, the read succeeds and the heap stays
// flat. The same file as the desired file itself is TooLarge. The test uses
// 64 MiB, well over the 24 MiB bound; `make bench` measures the agent's RSS
// beside the 192 MiB of the original attack.
func TestJunkBesideTheDesiredFile(t *testing.T) {
	gcAsDefault(t)
	for _, tt := range []struct {
		name string
		opts gitserver.Options
	}{
		{"v2 path-only", gitserver.Options{}},
		{"v0 with blob filters", gitserver.Options{V0Only: true}},
		{"v0 without filters", gitserver.Options{V0Only: true, NoFilter: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := server(t, tt.opts)
			u := user(t, s)
			commit(t, u, "kubevirt.yaml", "one\n")
			// The test is about memory: a loaded machine may take long to
			// serve the junk.
			src := source(t, s, nil, func(c *gitsource.Config) { c.Timeout = 2 * time.Minute })
			if _, err := read(t, src, head(t, src), "kubevirt.yaml"); err != nil {
				t.Fatal(err)
			}
			junk(t, u, "junk.bin")
			commit(t, u, "kubevirt.yaml", "two\n")
			var got string
			grown := peakHeapGrowth(func() {
				var err error
				if got, err = read(t, src, head(t, src), "kubevirt.yaml"); err != nil {
					t.Errorf("read beside junk: %v", err)
				}
			})
			if got != "two\n" {
				t.Errorf("read %q", got)
			}
			if grown > 24<<20 {
				t.Errorf("the heap grew by %d MiB reading beside a %d MiB file, want < 24 MiB", grown>>20, junkSize>>20)
			}

			junk(t, u, "kubevirt.yaml")
			var err error
			grown = peakHeapGrowth(func() { _, err = read(t, src, head(t, src), "kubevirt.yaml") })
			wantReason(t, err, gitsource.ReasonTooLarge)
			if grown > 24<<20 {
				t.Errorf("the heap grew by %d MiB refusing a %d MiB desired file, want < 24 MiB", grown>>20, junkSize>>20)
			}
		})
	}
}

// junkSize is the junk file's: inflating it whole would break the bound.
const junkSize = 64 << 20

// junk commits a zero-filled file of junkSize at path (sparse on disk).
func junk(t *testing.T, u *gitserver.User, path string) {
	t.Helper()
	f, err := os.Create(filepath.Join(u.Dir(), path))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(junkSize); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	for _, args := range [][]string{{"add", path}, {"commit", "--quiet", "-m", "junk"}, {"push", "--quiet", "origin", "HEAD:main"}} {
		if out, err := u.Git(args...); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
}

// gcAsDefault collects garbage at Go's default pace (GOGC=100) for the
// test: the heap figures it checks include garbage not yet collected, and
// make test raises GOGC for the whole run.
func gcAsDefault(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
}

// peakHeapGrowth runs f while sampling the heap, and returns the largest
// growth over the heap before it.
func peakHeapGrowth(f func()) int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	base := int64(m.HeapAlloc)
	var peak atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if g := int64(m.HeapAlloc) - base; g > peak.Load() {
				peak.Store(g)
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	f()
	close(done)
	wg.Wait()
	return peak.Load()
}

func itoa(i int) string {
	return string(rune('0'+i/100%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10))
}

// randomText is incompressible-ish text, different per seed.
func randomText(seed, n int) string {
	b := make([]byte, n)
	x := uint32(seed*2654435761 + 1)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = 'a' + byte(x%26)
	}
	return string(b)
}
