package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
)

type fleetFlags struct {
	repoURL, branch, gitSecretDir, dir, fleetPath, output string
	gitTimeout, staleAfter                                time.Duration
}

// fleetFiles is where `fleet status` reads the fleet file and the status
// files: a repository URL or a local checkout.
type fleetFiles interface {
	// Fleet returns the fleet file and when it was last changed (zero
	// when that cannot be told).
	Fleet(ctx context.Context, path string) ([]byte, time.Time, error)
	// Statuses returns each cluster's status file (cluster → key) from
	// the head of its branch status/<cluster>, which must be signed by its
	// key, each with its own error: errNoStatus when it has none, a
	// stalling gitsource error when it cannot be proven (unsigned, signed
	// by another key, too large). The call fails when Git cannot be read.
	Statuses(ctx context.Context, peers map[string]string) (map[string]agent.PeerRead, error)
}

var errNoStatus = errors.New("no status file")

func fleetCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "status" {
		fmt.Fprintln(stderr, "Usage: kvgitops fleet status [flags]\n\nRun 'kvgitops fleet status --help' for the flags.")
		return exitUsage
	}
	var f fleetFlags
	fs := flag.NewFlagSet("kvgitops fleet status", flag.ContinueOnError)
	fs.StringVar(&f.repoURL, "repo-url", "", "Git repository of the fleet (https:// or ssh://); or use --dir")
	fs.StringVar(&f.branch, "branch", "main", "branch of the fleet file")
	fs.StringVar(&f.gitSecretDir, "git-secret-dir", "", "Git credentials, as for kvgitops run")
	durationVar(fs, &f.gitTimeout, "git-timeout", 30*time.Second, "deadline of each Git operation")
	fs.StringVar(&f.dir, "dir", "", "a local checkout of the fleet repository instead of --repo-url")
	fs.StringVar(&f.fleetPath, "fleet-path", "fleet.yaml", "path of the fleet file in the repository")
	fs.StringVar(&f.output, "o", "table", "output: table, json or markdown (per-ring tables and a Mermaid chart)")
	durationVar(fs, &f.staleAfter, "stale-after", 0, "a cluster that has not acted on the fleet file this long after it changed is stale (default: the fleet file's spec.halt.statusMissingAfter)")
	if code, stop := parseCommand(fs, args[1:], os.LookupEnv, stderr, func() error { return problem(f.check()) }); stop {
		return code
	}
	files, err := f.files()
	if err != nil {
		fmt.Fprintln(stderr, "kvgitops fleet status:", err)
		return exitUsage
	}
	r, err := readFleet(ctx, files, f.fleetPath, f.staleAfter, time.Now(), terminal(stderr))
	if err != nil {
		fmt.Fprintln(stderr, "kvgitops fleet status:", err)
		return exitRefused
	}
	switch f.output {
	case "json":
		_ = json.NewEncoder(stdout).Encode(r)
	case "markdown":
		writeFleetMarkdown(stdout, r)
	default:
		writeFleetTable(stdout, r)
	}
	if !r.Healthy {
		return exitRefused
	}
	return exitOK
}

// terminal is w when it is a terminal (where a progress line helps), else
// nil.
func terminal(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return w
		}
	}
	return nil
}

func (f fleetFlags) check() string {
	switch {
	case (f.repoURL == "") == (f.dir == ""):
		return "give exactly one of --repo-url and --dir"
	case f.output != "table" && f.output != "json" && f.output != "markdown":
		return fmt.Sprintf("-o must be table, json or markdown, got %q", f.output)
	case f.repoURL != "":
		if err := gitsource.ValidateURL(f.repoURL); err != nil {
			return "--repo-url: " + err.Error()
		}
	}
	return ""
}

func (f fleetFlags) files() (fleetFiles, error) {
	if f.dir != "" {
		return dirFiles(f.dir), nil
	}
	src, err := gitsource.New(gitsource.Config{URL: f.repoURL, Branch: f.branch, Credentials: gitsource.SecretDir(f.gitSecretDir), Timeout: f.gitTimeout})
	if err != nil {
		return nil, err
	}
	return &repoFiles{repo: &agent.GitRepo{Source: src}}, nil
}

// readFleet reads the fleet file and every cluster's status.
// On a terminal (progress non-nil) it says what it reads while it reads.
func readFleet(ctx context.Context, files fleetFiles, path string, staleAfter time.Duration, now time.Time, progress io.Writer) (fleetReport, error) {
	data, since, err := files.Fleet(ctx, path)
	if err != nil {
		return fleetReport{}, fmt.Errorf("read the fleet file %s: %w", path, err)
	}
	f, err := planner.ParseFleet(data)
	if err != nil {
		return fleetReport{}, fmt.Errorf("%s: %w", path, err)
	}
	if staleAfter == 0 {
		staleAfter = f.StatusMissingAfter
	}
	statuses, unproven, err := readStatuses(ctx, files, f, progress)
	if err != nil {
		return fleetReport{}, err
	}
	return buildFleetReport(f, data, since, statuses, unproven, now, staleAfter), nil
}

// readStatuses reads every cluster's status: the ones it can prove, and
// why not for the others.
func readStatuses(ctx context.Context, files fleetFiles, f planner.Fleet, progress io.Writer) (map[string]*agent.Status, map[string]string, error) {
	statuses, unproven := map[string]*agent.Status{}, map[string]string{}
	keys := map[string]string{}
	for _, ring := range f.Rings {
		for _, c := range ring.Clusters {
			if keys[c] = f.StatusKeys[c]; keys[c] == "" {
				delete(keys, c)
				unproven[c] = "the fleet file lists no status key for it in spec.statusKeys"
			}
		}
	}
	if progress != nil {
		fmt.Fprintf(progress, "reading the status of %d clusters…", len(keys))
	}
	reads, err := files.Statuses(ctx, keys)
	if progress != nil {
		fmt.Fprint(progress, "\r\033[K") // the line goes before the report
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read the clusters' status: %w", err)
	}
	for _, ring := range f.Rings {
		for _, c := range ring.Clusters {
			read, ok := reads[c]
			switch {
			case !ok || errors.Is(read.Err, errNoStatus):
				continue
			case read.Err != nil:
				unproven[c] = read.Err.Error()
				continue
			}
			st, err := agent.ParsePeerStatus(read.Data)
			switch {
			case err != nil:
				unproven[c] = "its status file is unreadable: " + err.Error()
			case st.Cluster != c:
				unproven[c] = "its branch holds the status of cluster " + redact.Quote(st.Cluster)
			default:
				statuses[c] = &st
			}
		}
	}
	return statuses, unproven, nil
}

// repoFiles reads from a repository URL.
type repoFiles struct{ repo *agent.GitRepo }

func (r *repoFiles) Fleet(ctx context.Context, path string) ([]byte, time.Time, error) {
	head, err := r.repo.Source.Head(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	if head == "" {
		return nil, time.Time{}, errors.New("the branch has no commits")
	}
	data, err := r.repo.Source.ReadFile(ctx, head, path, planner.MaxFleetSize)
	if err != nil {
		return nil, time.Time{}, err
	}
	_, since, err := r.repo.Source.FileChanged(ctx, head, path)
	return data, since, err
}

// Statuses reads every status with one ls-refs and one fetch
// (agent.GitRepo.PeerStatuses).
func (r *repoFiles) Statuses(ctx context.Context, peers map[string]string) (map[string]agent.PeerRead, error) {
	reads, err := r.repo.PeerStatuses(ctx, peers)
	for c, read := range reads {
		if fault.ReasonOf(read.Err) == gitsource.ReasonDesiredFileMissing {
			reads[c] = agent.PeerRead{Err: errNoStatus}
		}
	}
	return reads, err
}

// dirFiles reads a local checkout: the fleet file from the working tree,
// each status from the head of the cluster's status branch (local, then
// origin's), verified with the same code as the agent's and read within the
// same cap.
type dirFiles string

func (d dirFiles) Fleet(ctx context.Context, path string) ([]byte, time.Time, error) {
	data, err := readCapped(filepath.Join(string(d), filepath.FromSlash(path)), planner.MaxFleetSize)
	if err != nil {
		return nil, time.Time{}, err
	}
	var since time.Time
	if out, err := d.git(ctx, 64, "log", "-1", "--format=%ct", "--", path); err == nil {
		if sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil {
			since = time.Unix(sec, 0)
		}
	}
	return data, since, nil
}

// Statuses reads every status from the checkout with two git processes,
// whatever the fleet's size: for-each-ref finds each cluster's branch head
// (local, else origin's), one cat-file --batch gives every head commit and
// status file; each is verified with the same code as the agent's and read
// within the same cap. Only a failing git fails the call.
func (d dirFiles) Statuses(ctx context.Context, peers map[string]string) (map[string]agent.PeerRead, error) {
	heads, err := d.heads(ctx)
	if err != nil {
		return nil, err
	}
	var clusters, queries []string
	out := map[string]agent.PeerRead{}
	for c := range peers {
		h, ok := heads[c]
		if !ok {
			out[c] = agent.PeerRead{Err: errNoStatus}
			continue
		}
		clusters = append(clusters, c)
		queries = append(queries, h, h+":"+agent.PeerStatusPath(c))
	}
	objs, err := d.catFiles(ctx, queries, agent.MaxStatusSize)
	if err != nil {
		return nil, err
	}
	for i, c := range clusters {
		data, err := verifiedStatus(c, peers[c], objs[2*i], objs[2*i+1])
		out[c] = agent.PeerRead{Data: data, Err: err}
	}
	return out, nil
}

// heads are the clusters' status branch heads: refs/heads/status/<c>,
// else refs/remotes/origin/status/<c>.
func (d dirFiles) heads(ctx context.Context) (map[string]string, error) {
	refs, err := d.git(ctx, 16<<20, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/status/", "refs/remotes/origin/status/")
	if err != nil {
		return nil, fmt.Errorf("list the status branches: %w", err)
	}
	heads := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(refs)), "\n") {
		id, ref, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if c, local := strings.CutPrefix(ref, "refs/heads/status/"); local {
			heads[c] = id
		} else if c, ok := strings.CutPrefix(ref, "refs/remotes/origin/status/"); ok && heads[c] == "" {
			heads[c] = id
		}
	}
	return heads, nil
}

// object is what cat-file --batch said of one query: its bytes, or that
// it is missing or over the cap (its size).
type object struct {
	typ     string // commit, blob, tree
	data    []byte
	missing bool
	size    int64
}

// catFiles asks one git cat-file --batch for every query; a blob over max
// is skipped as it streams past, never held.
func (d dirFiles) catFiles(ctx context.Context, queries []string, max int64) ([]object, error) {
	cmd := exec.CommandContext(ctx, "git", "-C", string(d), "cat-file", "--batch")
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	cmd.Stdin = strings.NewReader(strings.Join(queries, "\n") + "\n")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = cmd.Wait() }()
	r := bufio.NewReader(stdout)
	out := make([]object, len(queries))
	for i := range queries {
		header, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("git cat-file: %w", err)
		}
		f := strings.Fields(header)
		if len(f) != 3 {
			out[i].missing = true // "<query> missing"
			continue
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("git cat-file: %q", header)
		}
		out[i].typ, out[i].size = f[1], size
		if size > max {
			_, err = io.CopyN(io.Discard, r, size+1)
		} else {
			out[i].data = make([]byte, size+1)
			_, err = io.ReadFull(r, out[i].data)
			out[i].data = out[i].data[:size]
		}
		if err != nil {
			return nil, fmt.Errorf("git cat-file: %w", err)
		}
	}
	return out, nil
}

// verifiedStatus is a status file whose head commit key signed, or why
// not, as the agent says it.
func verifiedStatus(cluster, key string, commit, file object) ([]byte, error) {
	keys, err := gitsource.TrustedKeys(key)
	if err != nil {
		return nil, fault.Stalled(gitsource.ReasonSignatureInvalid, nil, "its status key in the fleet file cannot be used: %v", err)
	}
	if commit.missing || commit.data == nil || commit.typ != "commit" {
		return nil, errNoStatus
	}
	if _, err := gitsource.VerifyCommit(commit.data, keys); err != nil {
		return nil, fault.Stalled(gitsource.ReasonSignatureInvalid, nil, "%s on %s: %v", agent.PeerStatusPath(cluster), agent.PeerBranch(cluster), err)
	}
	switch {
	case file.missing:
		return nil, errNoStatus
	case file.typ != "blob":
		return nil, fault.Stalled(gitsource.ReasonNotRegularFile, nil, "%s on %s is a %s, not a file", agent.PeerStatusPath(cluster), agent.PeerBranch(cluster), file.typ)
	case file.data == nil:
		return nil, fault.Stalled(gitsource.ReasonTooLarge, nil, "%s on %s is %d bytes, over the %d-byte limit", agent.PeerStatusPath(cluster), agent.PeerBranch(cluster), file.size, agent.MaxStatusSize)
	}
	return file.data, nil
}

// git runs git in the checkout and returns at most max bytes of its output:
// more is an error, never read into memory.
func (d dirFiles) git(ctx context.Context, max int64, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", string(d)}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	data, rerr := io.ReadAll(io.LimitReader(out, max+1))
	if int64(len(data)) > max {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("git %s: output over %d bytes", args[0], max)
	}
	if err := cmd.Wait(); err != nil {
		return nil, err
	}
	return data, rerr
}
