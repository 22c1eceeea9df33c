package gitsource_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

// writers runs n status writers against one branch of the real git server,
// each pushing updates status updates of its own file, every failed write
// tried again as the agent does on its next pass. It returns what each
// write took, and how many writes failed and were tried again.
func writers(t *testing.T, s *gitserver.Server, n, updates int) (latencies []time.Duration, again int64) {
	srcs := make([]*gitsource.Source, n)
	for i := range srcs {
		srcs[i] = source(t, s, nil, func(c *gitsource.Config) { c.Timeout = time.Minute })
	}
	var mu sync.Mutex
	var retried atomic.Int64
	var wg sync.WaitGroup
	for i, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := 1; u <= updates; u++ {
				for {
					start := time.Now()
					_, err := src.WriteFile(context.Background(), fmt.Sprintf("status/c%02d.yaml", i), []byte(fmt.Sprintf("cluster: c%02d\nupdate: %d\n", i, u)),
						fmt.Sprintf("status(c%02d): update %d", i, u))
					if err == nil {
						mu.Lock()
						latencies = append(latencies, time.Since(start))
						mu.Unlock()
						break
					}
					if fault.Stalls(err) || errors.Is(err, gitsource.ErrUnchanged) {
						t.Errorf("writer c%02d: %v", i, err)
						return
					}
					retried.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return latencies, retried.Load()
}

// TestManyWritersOneBranch: 50 clusters of a fleet push their status files
// to one branch at once; every final status is there and every update of
// every cluster is in the history (none overwritten, none lost), and a
// write needs few attempts.
func TestManyWritersOneBranch(t *testing.T) {
	const n, updates = 50, 2
	s := server(t, gitserver.Options{})
	commit(t, user(t, s), "kubevirt.yaml", "desired\n")
	lat, again := writers(t, s, n, updates)
	if len(lat) != n*updates {
		t.Fatalf("%d writes succeeded, want %d", len(lat), n*updates)
	}
	log, err := s.Log("")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		for u := 1; u <= updates; u++ {
			subject := fmt.Sprintf("status(c%02d): update %d", i, u)
			if !slices.ContainsFunc(log, func(l string) bool { return strings.HasSuffix(l, subject) }) {
				t.Errorf("%q is not in the history", subject)
			}
		}
		got, err := s.Show("main", fmt.Sprintf("status/c%02d.yaml", i))
		if want := fmt.Sprintf("cluster: c%02d\nupdate: %d", i, updates); err != nil || strings.TrimSpace(got) != want {
			t.Errorf("status/c%02d.yaml is %q (%v), want %q", i, got, err, want)
		}
	}
	if len(log) != n*updates+1 {
		t.Errorf("%d commits, want %d (one per update and the desired file)", len(log), n*updates+1)
	}
	slices.Sort(lat)
	t.Logf("%d writers × %d updates: p50 %s, p99 %s, %d writes tried again", n, updates, lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond), again)
}
