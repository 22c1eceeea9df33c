package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
	"github.com/kvgitops/kvgitops/test/root"
)

// benchFleetScale is the fleet simulator: n clusters' signed status
// branches on the real git server, the fleet file listing them in rings of
// 1, n/20 and the rest, and agents of the last ring reading the earlier
// rings as their ring gates do — batched (one ls-refs, one fetch of the
// heads that moved) beside today's per-peer reads, in the same run.
func benchFleetScale(sizes []int, readers int) error {
	bin, cleanup, err := buildKvgitops()
	if err != nil {
		return err
	}
	defer cleanup()
	fmt.Printf("\n## fleets at scale (loopback smart HTTP over TLS; rings of 1, n/20 and the rest; %d agents of the last ring reading the earlier rings at once, each its own Git client)\n\n", readers)
	fmt.Println("Requests are HTTP requests to the git server per agent per pass (a pass a minute by default: per minute); bytes what it sent them.")
	fmt.Println()
	fmt.Println("| clusters | earlier peers | reads | requests, waiting (cold) | steady (no head moved) | one head moved | bytes steady | bytes one moved | pass, one moved | fleet status | ls-remote + fetch | push attempts per write |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, n := range sizes {
		rows, err := fleetScaleRun(n, readers, bin)
		if err != nil {
			return fmt.Errorf("%d clusters: %w", n, err)
		}
		for _, r := range rows {
			fmt.Println(r)
		}
	}
	return nil
}

// simFleet is one simulated fleet on a git server.
type simFleet struct {
	srv      *gitserver.Server
	names    []string
	signers  []*gitsource.CommitSigner
	keys     []string
	earlier  map[string]string // the last ring's peers: cluster → key
	digest   string
	attempts float64
}

func fleetScaleRun(n, readers int, bin string) ([]string, error) {
	f, err := newSimFleet(n)
	if err != nil {
		return nil, err
	}
	defer f.srv.Close()
	readers = min(readers, n-len(f.earlier))
	var rows []string
	for _, batched := range []bool{false, true} {
		m, err := f.measureReaders(readers, batched)
		if err != nil {
			return nil, err
		}
		mode, status, plain, attempts := "per peer (before)", "", "", ""
		if batched {
			mode = "batched"
			st, lr, err := f.fleetStatusTimes(bin)
			if err != nil {
				return nil, err
			}
			status, plain, attempts = st.Round(time.Millisecond).String(), lr.Round(time.Millisecond).String(), fmt.Sprintf("%.2f", f.attempts)
		}
		rows = append(rows, fmt.Sprintf("| %d | %d | %s | %.1f | %.1f | %.1f | %s | %s | %s | %s | %s | %s |", n, len(f.earlier), mode,
			m.cold.requests, m.steady.requests, m.moved.requests, kib(m.steady.bytes), kib(m.moved.bytes), m.moved.wall.Round(time.Millisecond), status, plain, attempts))
	}
	return rows, nil
}

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

// newSimFleet makes n clusters, each with its own key, the fleet file on
// main, and each cluster's signed Succeeded status on its branch.
func newSimFleet(n int) (*simFleet, error) {
	srv, err := gitserver.New(gitserver.Options{Username: "bench", Password: "bench-pw"})
	if err != nil {
		return nil, err
	}
	f := &simFleet{srv: srv, earlier: map[string]string{}}
	ring2 := max(1, n/20)
	var fleet strings.Builder
	fleet.WriteString("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtFleet\nspec:\n  kubevirt: {version: v1.8.4}\n  rings:\n")
	for i := range n {
		signer, pub, err := gitserver.StatusKey()
		if err != nil {
			return nil, err
		}
		f.names = append(f.names, fmt.Sprintf("cluster-%04d", i))
		f.signers, f.keys = append(f.signers, signer), append(f.keys, pub)
		if i < 1+ring2 {
			f.earlier[f.names[i]] = f.keys[i]
		}
	}
	for _, r := range []struct {
		name     string
		from, to int
	}{{"canary", 0, 1}, {"early", 1, 1 + ring2}, {"prod", 1 + ring2, n}} {
		fleet.WriteString("  - name: " + r.name + "\n    clusters:\n")
		for _, c := range f.names[r.from:r.to] {
			fleet.WriteString("    - " + c + "\n")
		}
	}
	fleet.WriteString("  statusKeys:\n")
	for i, c := range f.names {
		fleet.WriteString("    " + c + ": " + f.keys[i] + "\n")
	}
	sum := sha256.Sum256([]byte(fleet.String()))
	f.digest = hex.EncodeToString(sum[:])[:16]
	u, err := srv.User()
	if err != nil {
		return nil, err
	}
	if _, err := u.CommitFile("fleet.yaml", []byte(fleet.String()), "fleet"); err != nil {
		return nil, err
	}
	return f, f.writeStatuses()
}

// writeStatuses has every cluster commit its Succeeded status to its own
// branch, 8 at a time, and records the push attempts per write.
func (f *simFleet) writeStatuses() error {
	before := f.srv.ReceivePacks()
	work := make(chan int)
	errs := make(chan error, len(f.names))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				errs <- f.writeStatus(i, "Succeeded")
			}
		}()
	}
	for i := range f.names {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	f.attempts = float64(f.srv.ReceivePacks()-before) / float64(len(f.names))
	return nil
}

func (f *simFleet) writeStatus(i int, message string) error {
	c := f.names[i]
	src, err := benchSource(f.srv.URL(), string(f.srv.CAPEM()), func(cfg *gitsource.Config) {
		cfg.StatusBranch, cfg.Signer = agent.PeerBranch(c), f.signers[i]
	})
	if err != nil {
		return err
	}
	st := agent.Status{APIVersion: agent.StatusAPIVersion, Kind: agent.StatusKind, Cluster: c, Phase: agent.PhaseSucceeded, Reason: "UpToDate", Message: message,
		Desired: &agent.DesiredSummary{State: "Present", Digest: f.digest}, Observed: agent.ObservedSummary{Version: "v1.8.4", Available: true}}
	data, err := yaml.Marshal(st)
	if err != nil {
		return err
	}
	_, err = src.WriteFile(context.Background(), agent.PeerStatusPath(c), data, "status("+c+")")
	return err
}

// passCost is one pass of the readers: per agent requests and bytes, and
// the slowest agent's time.
type passCost struct {
	requests, bytes float64
	wall            time.Duration
}

type readerCosts struct{ cold, steady, moved passCost }

// measureReaders runs readers agents of the last ring, each with its own
// Git client, through three passes at once: cold, steady, and after one
// earlier peer's head moved.
func (f *simFleet) measureReaders(readers int, batched bool) (readerCosts, error) {
	repos := make([]*agent.GitRepo, readers)
	for i := range repos {
		src, err := benchSource(f.srv.URL(), string(f.srv.CAPEM()), nil)
		if err != nil {
			return readerCosts{}, err
		}
		repos[i] = &agent.GitRepo{Source: src}
	}
	pass := func() (passCost, error) {
		req0, bytes0 := f.srv.InfoRefs()+f.srv.UploadPacks(), f.srv.BytesOut()
		start := time.Now()
		errs := make(chan error, readers)
		for _, repo := range repos {
			go func() { errs <- f.read(repo, batched) }()
		}
		for range readers {
			if err := <-errs; err != nil {
				return passCost{}, err
			}
		}
		return passCost{requests: float64(f.srv.InfoRefs()+f.srv.UploadPacks()-req0) / float64(readers),
			bytes: float64(f.srv.BytesOut()-bytes0) / float64(readers), wall: time.Since(start)}, nil
	}
	var c readerCosts
	var err error
	if c.cold, err = pass(); err != nil {
		return c, err
	}
	if c.steady, err = pass(); err != nil {
		return c, err
	}
	if err := f.writeStatus(1, fmt.Sprintf("moved at %s", time.Now().Format(time.RFC3339Nano))); err != nil {
		return c, err
	}
	c.moved, err = pass()
	return c, err
}

// read is one agent's gate read of the earlier rings; every peer must come
// back verified and Succeeded.
func (f *simFleet) read(repo *agent.GitRepo, batched bool) error {
	ctx := context.Background()
	check := func(c string, data []byte, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
		st, err := agent.ParsePeerStatus(data)
		if err != nil || st.Cluster != c || st.Phase != agent.PhaseSucceeded {
			return fmt.Errorf("%s: %v %s %s", c, err, st.Cluster, st.Phase)
		}
		return nil
	}
	if batched {
		reads, err := repo.PeerStatuses(ctx, f.earlier)
		if err != nil {
			return err
		}
		for c, r := range reads {
			if err := check(c, r.Data, r.Err); err != nil {
				return err
			}
		}
		return nil
	}
	for c, key := range f.earlier {
		data, err := perPeer(ctx, repo.Source, c, key)
		if err := check(c, data, err); err != nil {
			return err
		}
	}
	return nil
}

// perPeer is how an agent read one peer before reads were batched: its
// branch head with its own ls-refs, then the file and its signature.
func perPeer(ctx context.Context, src *gitsource.Source, cluster, key string) ([]byte, error) {
	rev, err := src.HeadOf(ctx, agent.PeerBranch(cluster))
	if err != nil || rev == "" {
		return nil, fmt.Errorf("head of %s: %q %v", agent.PeerBranch(cluster), rev, err)
	}
	keys, err := gitsource.TrustedKeys(key)
	if err != nil {
		return nil, err
	}
	data, _, err := src.ReadSigned(ctx, rev, agent.PeerStatusPath(cluster), agent.MaxStatusSize, keys)
	return data, err
}

// fleetStatusTimes is how long `kvgitops fleet status` takes on the fleet,
// and how long the git CLI takes to list the same refs and fetch them.
func (f *simFleet) fleetStatusTimes(bin string) (time.Duration, time.Duration, error) {
	dir, err := os.MkdirTemp("", "kvgitops-bench-fleet-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	secret := filepath.Join(dir, "secret")
	ca := filepath.Join(secret, "ca.crt")
	if err := os.MkdirAll(secret, 0o700); err != nil {
		return 0, 0, err
	}
	for k, v := range map[string]string{"username": "bench", "password": "bench-pw", "ca.crt": string(f.srv.CAPEM())} {
		if err := os.WriteFile(filepath.Join(secret, k), []byte(v), 0o600); err != nil {
			return 0, 0, err
		}
	}
	start := time.Now()
	out, err := exec.Command(bin, "fleet", "status", "--repo-url", f.srv.URL(), "--git-secret-dir", secret, "--fleet-path", "fleet.yaml", "-o", "json").CombinedOutput()
	status := time.Since(start)
	if err != nil || !strings.Contains(string(out), `"healthy":true`) {
		return 0, 0, fmt.Errorf("fleet status: %v: %.500s", err, out)
	}
	u := strings.Replace(f.srv.URL(), "https://", "https://bench:bench-pw@", 1)
	env := append(os.Environ(), "GIT_SSL_CAINFO="+ca, "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	start = time.Now()
	for _, args := range [][]string{
		{"ls-remote", u, "refs/heads/status/*"},
		{"init", "-q", filepath.Join(dir, "clone")},
		{"-C", filepath.Join(dir, "clone"), "fetch", "-q", "--depth=1", u, "+refs/heads/status/*:refs/remotes/status/*"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("git %s: %v: %.300s", args[0], err, out)
		}
	}
	return status, time.Since(start), nil
}

// buildKvgitops builds the binary fleet status runs.
func buildKvgitops() (string, func(), error) {
	dir, err := os.MkdirTemp("", "kvgitops-bench-bin-")
	if err != nil {
		return "", nil, err
	}
	mod, err := root.Module()
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "kvgitops")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/kvgitops")
	cmd.Dir = mod
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("build kvgitops: %v: %s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}
