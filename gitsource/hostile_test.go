package gitsource_test

import (
	"context"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

func runCmd(dir string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestHostileServers(t *testing.T) {
	gcAsDefault(t)
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"never-ending advertisement", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
			_, _ = w.Write([]byte("001e# service=git-upload-pack\n0000"))
			line := []byte("003f" + strings.Repeat("a", 40) + " refs/heads/xxxxxxxxxxxxxxxxxx\n")
			for r.Context().Err() == nil {
				if _, err := w.Write(line); err != nil {
					return
				}
			}
		}},
		{"bad pkt-lines", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
			_, _ = w.Write([]byte("zzzz this is not a pkt-line\n"))
		}},
		{"endless v2 ls-refs", func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
				_, _ = w.Write([]byte("000eversion 2\n000cls-refs\n0012fetch=shallow\n0000"))
				return
			}
			line := []byte("003f" + strings.Repeat("a", 40) + " refs/heads/xxxxxxxxxxxxxxxxxx\n")
			for r.Context().Err() == nil {
				if _, err := w.Write(line); err != nil {
					return
				}
			}
		}},
		{"v2 packet over the maximum length", func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				_, _ = w.Write([]byte("000eversion 2\n000cls-refs\n0012fetch=shallow\n0000"))
				return
			}
			_, _ = w.Write([]byte("ffff" + strings.Repeat("z", 100)))
		}},
		{"headers never sent", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}},
		{"traversal ref name", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
			_, _ = w.Write([]byte("001e# service=git-upload-pack\n0000" + "004b" + strings.Repeat("b", 40) + " refs/heads/../../config\x00\n0000"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := server(t, gitserver.Options{})
			s.Filter(func(w http.ResponseWriter, r *http.Request) bool { tt.handler(w, r); return true })
			src := source(t, s, nil, func(c *gitsource.Config) {
				c.Timeout = 2 * time.Second
				c.MaxPackSize = 8 << 20
			})
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			rev, err := src.Head(context.Background())
			allErrors.add(err)
			if err == nil && rev != "" {
				t.Fatalf("hostile server gave a head %q", rev)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s, past the 2s deadline", d)
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 64<<20 {
				t.Errorf("heap grew by %d MiB", grown>>20)
			}
		})
	}
}
