package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

// result is one measurement: a median time and the peak RSS.
type result struct {
	ms     float64
	rssKB  int64
	baseKB int64   // the process's RSS before the measured work
	bytes  float64 // bytes the server sent per run (median run's share: total / runs)
}

func benchGit(names []string, runs int) error {
	srv, err := gitserver.New(gitserver.Options{Username: "bench", Password: "bench-pw"})
	if err != nil {
		return err
	}
	defer srv.Close()
	work, err := os.MkdirTemp("", "kvgitops-gitbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ca := filepath.Join(work, "ca.crt")
	if err := os.WriteFile(ca, srv.CAPEM(), 0o600); err != nil {
		return err
	}
	fmt.Printf("\n## gitsource vs git CLI (loopback smart HTTP over TLS, median of %d runs)\n\n", runs)
	fmt.Println("| repo | commits/files/refs | operation | gitsource | git CLI | ratio | gitsource bytes | git bytes | gitsource peak RSS | git peak RSS |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, n := range names {
		sz, ok := sizes[n]
		if !ok {
			return fmt.Errorf("unknown size %q", n)
		}
		took, err := generate(srv, sz)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: generated %s (%d commits, %d files) in %s\n", sz.name, sz.commits, sz.files, took.Round(time.Second))
		url := strings.Replace(srv.URL(sz.name+".git"), "https://", "https://bench:bench-pw@", 1)
		cliEnv := []string{"GIT_SSL_CAINFO=" + ca}
		rows, err := measureRepo(srv, sz, url, cliEnv, work, runs)
		if err != nil {
			return err
		}
		refs := 1 + sz.tags
		for _, r := range rows {
			fmt.Printf("| %s | %d/%d/%d | %s | %.1f ms | %.1f ms | %.2f× | %s | %s | %s (+%s over start) | %s |\n", sz.name, sz.commits, sz.files, refs, r.op,
				r.ours.ms, r.cli.ms, r.ours.ms/r.cli.ms, byteSize(r.ours.bytes), byteSize(r.cli.bytes), mib(r.ours.rssKB), mib(r.ours.rssKB-r.ours.baseKB), mib(r.cli.rssKB))
		}
		limit, err := physicalLimit(srv, sz)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: %s: the objects a read needs (commit, trees on the path, the blob) are %s uncompressed\n", sz.name, byteSize(limit))
	}
	return nil
}

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

func byteSize(b float64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

// physicalLimit is what a read after a change must transfer at least: the
// tip commit, its root tree (the desired file is at the root) and the blob,
// uncompressed.
func physicalLimit(srv *gitserver.Server, sz size) (float64, error) {
	dir := filepath.Join(srv.Root, sz.name+".git")
	var total float64
	for _, obj := range []string{"main", "main^{tree}", "main:kubevirt.yaml"} {
		out, err := gitserver.Git(context.Background(), dir, nil, "cat-file", "-s", obj)
		if err != nil {
			return 0, err
		}
		var n float64
		fmt.Sscan(strings.TrimSpace(out), &n)
		total += n
	}
	return total, nil
}

type row struct {
	op        string
	ours, cli result
}

func measureRepo(srv *gitserver.Server, sz size, url string, cliEnv []string, work string, runs int) ([]row, error) {
	ctx := context.Background()
	repoURL := srv.URL(sz.name + ".git")
	clone := filepath.Join(work, sz.name+"-clone")
	if _, err := gitserver.Git(ctx, work, cliEnv, "clone", "--quiet", "--depth", "1", "--single-branch", "--no-tags", url, clone); err != nil {
		return nil, err
	}
	// The CLI's cheapest read: a shallow partial clone without blobs; the
	// one blob comes on demand from the promisor remote.
	partial := filepath.Join(work, sz.name+"-partial")
	if _, err := gitserver.Git(ctx, work, cliEnv, "clone", "--quiet", "--depth", "1", "--filter=blob:none", "--no-checkout", "--single-branch", "--no-tags", url, partial); err != nil {
		return nil, err
	}
	var rows []row
	// 1. Unchanged poll.
	ours, err := child(srv, runs, "poll", repoURL, string(srv.CAPEM()))
	if err != nil {
		return nil, err
	}
	cli, err := cliRuns(srv, runs, func() []cliStep {
		return []cliStep{{dir: work, args: []string{"-c", "protocol.version=2", "ls-remote", "--heads", url, "main"}}}
	}, cliEnv, nil)
	if err != nil {
		return nil, err
	}
	rows = append(rows, row{"unchanged poll", ours, cli})
	// 2. Read the desired file after one new commit.
	committer, err := srv.User(sz.name + ".git")
	if err != nil {
		return nil, err
	}
	n := 0
	bump := func() error {
		n++
		_, err := committer.CommitFile("kubevirt.yaml", []byte(fmt.Sprintf("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n  version: v1.8.%d\n", n%5)), "bump")
		return err
	}
	ours, err = childWithBump(srv, runs, "read-after-commit", bump, repoURL, string(srv.CAPEM()))
	if err != nil {
		return nil, err
	}
	cli, err = cliRuns(srv, runs, func() []cliStep {
		return []cliStep{
			{dir: partial, args: []string{"fetch", "--quiet", "--depth", "1", "--filter=blob:none", "origin", "main"}},
			{dir: partial, args: []string{"show", "FETCH_HEAD:kubevirt.yaml"}},
		}
	}, cliEnv, bump)
	if err != nil {
		return nil, err
	}
	rows = append(rows, row{"read desired file after 1 new commit", ours, cli})
	// 3. Commit and push the status file.
	ours, err = child(srv, runs, "write-status", repoURL, string(srv.CAPEM()))
	if err != nil {
		return nil, err
	}
	i := 0
	cli, err = cliRuns(srv, runs, func() []cliStep {
		i++
		return []cliStep{
			{dir: clone, write: fmt.Sprintf("status/bench.yaml=phase: Idle\nrun: cli-%d\n", i), args: []string{"add", "status/bench.yaml"}},
			{dir: clone, args: []string{"commit", "--quiet", "-m", "status"}},
			{dir: clone, args: []string{"push", "--quiet", "origin", "HEAD:main"}},
		}
	}, cliEnv, func() error {
		// Bring the clone up to date first (not timed).
		if _, err := gitserver.Git(ctx, clone, cliEnv, "fetch", "--quiet", "--depth", "1", "origin", "main"); err != nil {
			return err
		}
		_, err := gitserver.Git(ctx, clone, cliEnv, "reset", "--quiet", "--hard", "FETCH_HEAD")
		return err
	})
	if err != nil {
		return nil, err
	}
	rows = append(rows, row{"commit + push status file", ours, cli})
	return rows, nil
}

type cliStep struct {
	dir   string
	write string // "path=content" written before the command (not timed)
	args  []string
}

// cliRuns times the git CLI steps of each run (after prep, untimed) and
// keeps the median time and the peak RSS of any one git process.
func cliRuns(srv *gitserver.Server, runs int, steps func() []cliStep, env []string, prep func() error) (result, error) {
	var times []float64
	var peak, sent int64
	for r := 0; r < runs; r++ {
		if prep != nil {
			if err := prep(); err != nil {
				return result{}, err
			}
		}
		var total time.Duration
		for _, s := range steps() {
			if s.write != "" {
				p, c, _ := strings.Cut(s.write, "=")
				full := filepath.Join(s.dir, p)
				_ = os.MkdirAll(filepath.Dir(full), 0o755)
				if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
					return result{}, err
				}
			}
			cmd := exec.Command("git", s.args...)
			cmd.Dir = s.dir
			cmd.Env = append(gitserver.GitEnv(s.dir), env...)
			b0 := srv.BytesOut()
			start := time.Now()
			out, err := cmd.CombinedOutput()
			if err != nil {
				return result{}, fmt.Errorf("git %v: %v: %s", s.args, err, out)
			}
			total += time.Since(start)
			sent += srv.BytesOut() - b0
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > peak {
				peak = ru.Maxrss
			}
		}
		times = append(times, float64(total.Microseconds())/1000)
	}
	return result{ms: median(times), rssKB: peak, bytes: float64(sent) / float64(runs)}, nil
}

func median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

// child runs the gitsource operation in a child process (so its peak RSS is
// its own), which reports the median of runs.
func child(srv *gitserver.Server, runs int, op string, args ...string) (result, error) {
	return childWithBump(srv, runs, op, nil, args...)
}

// childWithBump also makes a commit before each timed run; the child waits
// for a line on stdin that says the commit is in. The bytes the server sent
// are counted from the first run on (not the child's warm-up), without the
// bumps' own pushes.
func childWithBump(srv *gitserver.Server, runs int, op string, bump func() error, args ...string) (result, error) {
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	cmd := exec.Command(self, append([]string{"-child", op, fmt.Sprint(runs)}, args...)...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	sc := bufio.NewScanner(stdout)
	var res struct{ Ms, BaseKB float64 }
	var first, excluded int64 = -1, 0
	for sc.Scan() {
		line := sc.Text()
		if line == "ready" {
			if first < 0 {
				first = srv.BytesOut()
			}
			if bump != nil {
				b0 := srv.BytesOut()
				if err := bump(); err != nil {
					_ = cmd.Process.Kill()
					return result{}, err
				}
				excluded += srv.BytesOut() - b0
			}
			fmt.Fprintln(stdin, "go")
			continue
		}
		if err := json.Unmarshal([]byte(line), &res); err == nil {
			break
		}
	}
	sent := srv.BytesOut() - first - excluded
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		return result{}, fmt.Errorf("child %s: %w", op, err)
	}
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return result{ms: res.Ms, rssKB: ru.Maxrss, baseKB: int64(res.BaseKB), bytes: float64(sent) / float64(runs)}, nil
}

// runChild is the child side: a long-lived Source, warmed up, then runs
// timed operations.
func runChild(op string, args []string) int {
	var runs int
	fmt.Sscan(args[0], &runs)
	base := selfRSS()
	url, caPEM := args[1], args[2]
	src, err := newChildSource(url, caPEM)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	// Warm up: the agent has polled and read the tip before.
	rev, err := src.Head(ctx)
	if err == nil {
		_, err = src.ReadFile(ctx, rev, "kubevirt.yaml", 64<<10)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	in := bufio.NewScanner(os.Stdin)
	var times []float64
	for r := 0; r < runs; r++ {
		fmt.Println("ready") // the parent counts bytes from here, and may commit first
		in.Scan()
		start := time.Now()
		switch op {
		case "poll":
			_, err = src.Head(ctx)
		case "read-after-commit":
			var rev gitsource.Revision
			if rev, err = src.Head(ctx); err == nil {
				_, err = src.ReadFile(ctx, rev, "kubevirt.yaml", 64<<10)
			}
		case "write-status":
			_, err = src.WriteFile(ctx, "status/bench.yaml", []byte(fmt.Sprintf("phase: Idle\nrun: ours-%d-%d\n", time.Now().UnixNano(), r)), "status")
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, op, err)
			return 1
		}
		times = append(times, float64(time.Since(start).Microseconds())/1000)
	}
	b, _ := json.Marshal(map[string]float64{"Ms": median(times), "BaseKB": float64(base)})
	fmt.Println(string(b))
	return 0
}

func newChildSource(url, caPEM string) (*gitsource.Source, error) {
	return benchSource(url, caPEM, nil)
}

// benchSource is a Source with the bench server's credentials; mod, when
// set, adjusts its configuration.
func benchSource(url, caPEM string, mod func(*gitsource.Config)) (*gitsource.Source, error) {
	dir, err := os.MkdirTemp("", "kvgitops-bench-secret-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	for k, v := range map[string]string{"username": "bench", "password": "bench-pw", "ca.crt": caPEM} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			return nil, err
		}
	}
	auth, err := gitsource.LoadAuth(dir)
	if err != nil {
		return nil, err
	}
	cfg := gitsource.Config{URL: url, Auth: auth, Timeout: 5 * time.Minute, MaxPackSize: 2 << 30}
	if mod != nil {
		mod(&cfg)
	}
	return gitsource.New(cfg)
}

// selfRSS is this process's resident set in KiB.
func selfRSS() int64 { return rssKB(os.Getpid()) }
