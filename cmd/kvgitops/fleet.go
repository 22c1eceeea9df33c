package main

import (
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
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/planner"
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
	// Status returns a cluster's status file; errNoStatus when it has none.
	Status(ctx context.Context, cluster string) ([]byte, error)
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
	r, err := readFleet(ctx, files, f.fleetPath, f.staleAfter, time.Now())
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
	auth, err := gitsource.LoadAuth(f.gitSecretDir)
	if err != nil {
		return nil, err
	}
	src, err := gitsource.New(gitsource.Config{URL: f.repoURL, Branch: f.branch, Auth: auth, Timeout: f.gitTimeout})
	if err != nil {
		return nil, err
	}
	return &repoFiles{repo: &agent.GitRepo{Source: src}}, nil
}

// readFleet reads the fleet file and every cluster's status.
func readFleet(ctx context.Context, files fleetFiles, path string, staleAfter time.Duration, now time.Time) (fleetReport, error) {
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
	statuses, unreadable := map[string]*agent.Status{}, map[string]error{}
	for _, ring := range f.Rings {
		for _, c := range ring.Clusters {
			data, err := files.Status(ctx, c)
			switch {
			case errors.Is(err, errNoStatus):
				continue
			case err != nil:
				return fleetReport{}, fmt.Errorf("read the status of %s: %w", c, err)
			}
			st, err := agent.ParseStatus(data)
			if err != nil {
				unreadable[c] = err
				continue
			}
			statuses[c] = &st
		}
	}
	return buildFleetReport(f, data, since, statuses, unreadable, now, staleAfter), nil
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
	data, err := r.repo.Source.ReadFile(ctx, head, path, planner.MaxDesiredSize)
	if err != nil {
		return nil, time.Time{}, err
	}
	_, since, err := r.repo.Source.FileChanged(ctx, head, path)
	return data, since, err
}

func (r *repoFiles) Status(ctx context.Context, cluster string) ([]byte, error) {
	data, err := r.repo.PeerStatus(ctx, cluster)
	if gitsource.ReasonOf(err) == gitsource.ReasonDesiredFileMissing {
		return nil, errNoStatus
	}
	return data, err
}

// dirFiles reads a local checkout: the fleet file from the working tree,
// each status from the cluster's status branch (local, then origin's)
// when there is one, else from the working tree.
type dirFiles string

func (d dirFiles) Fleet(ctx context.Context, path string) ([]byte, time.Time, error) {
	data, err := readCapped(filepath.Join(string(d), filepath.FromSlash(path)), planner.MaxDesiredSize)
	if err != nil {
		return nil, time.Time{}, err
	}
	var since time.Time
	if out, err := d.git(ctx, "log", "-1", "--format=%ct", "--", path); err == nil {
		if sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil {
			since = time.Unix(sec, 0)
		}
	}
	return data, since, nil
}

func (d dirFiles) Status(ctx context.Context, cluster string) ([]byte, error) {
	path := agent.PeerStatusPath(cluster)
	for _, ref := range []string{"refs/heads/status/" + cluster, "refs/remotes/origin/status/" + cluster} {
		if out, err := d.git(ctx, "show", ref+":"+path); err == nil {
			return out, nil
		}
	}
	data, err := readCapped(filepath.Join(string(d), filepath.FromSlash(path)), agent.MaxStatusSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoStatus
	}
	return data, err
}

func (d dirFiles) git(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", string(d)}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	return cmd.Output()
}
