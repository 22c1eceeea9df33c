package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

// benchFleet measures many agents pushing status files at once: to one
// branch, and each to its own status branch.
func benchFleet(counts []int, updates int) error {
	fmt.Printf("\n## status writers of a fleet (loopback smart HTTP over TLS, %d updates each, a failed write tried again)\n\n", updates)
	fmt.Println("| writers | layout | writes/s | p50 | p99 | push attempts per write | writes that gave up (PushRetries) |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, n := range counts {
		for _, perCluster := range []bool{false, true} {
			r, err := fleetRun(n, updates, perCluster)
			if err != nil {
				return err
			}
			layout := "one branch"
			if perCluster {
				layout = "a branch per cluster"
			}
			fmt.Printf("| %d | %s | %.1f | %s | %s | %.2f | %d |\n", n, layout, r.rate, r.p50, r.p99, r.attempts, r.gaveUp)
		}
	}
	return nil
}

type fleetResult struct {
	rate     float64
	p50, p99 time.Duration
	attempts float64
	gaveUp   int
}

func fleetRun(n, updates int, perCluster bool) (fleetResult, error) {
	srv, err := gitserver.New(gitserver.Options{Username: "bench", Password: "bench-pw"})
	if err != nil {
		return fleetResult{}, err
	}
	defer srv.Close()
	u, err := srv.User()
	if err != nil {
		return fleetResult{}, err
	}
	if _, err := u.CommitFile("kubevirt.yaml", []byte("desired\n"), "desired"); err != nil {
		return fleetResult{}, err
	}
	srcs := make([]*gitsource.Source, n)
	for i := range srcs {
		if srcs[i], err = benchSource(srv.URL(), string(srv.CAPEM()), func(c *gitsource.Config) {
			c.Timeout = time.Minute
			if perCluster {
				c.StatusBranch = fmt.Sprintf("status/c%03d", i)
			}
		}); err != nil {
			return fleetResult{}, err
		}
	}
	var mu sync.Mutex
	var lat []time.Duration
	gaveUp := 0
	var wg sync.WaitGroup
	before := srv.ReceivePacks()
	start := time.Now()
	for i, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for up := 1; up <= updates; up++ {
				for {
					t0 := time.Now()
					_, err := src.WriteFile(context.Background(), fmt.Sprintf("status/c%03d.yaml", i), []byte(fmt.Sprintf("update: %d\n", up)), "status")
					mu.Lock()
					if err == nil || errors.Is(err, gitsource.ErrUnchanged) {
						lat = append(lat, time.Since(t0))
						mu.Unlock()
						break
					}
					gaveUp++
					mu.Unlock()
					if fault.Stalls(err) {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	if len(lat) != n*updates {
		return fleetResult{}, fmt.Errorf("%d of %d writes succeeded", len(lat), n*updates)
	}
	slices.Sort(lat)
	return fleetResult{rate: float64(len(lat)) / wall.Seconds(), p50: lat[len(lat)/2].Round(time.Millisecond), p99: lat[len(lat)*99/100].Round(time.Millisecond),
		attempts: float64(srv.ReceivePacks()-before) / float64(len(lat)), gaveUp: gaveUp}, nil
}
