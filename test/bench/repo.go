package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/kvgitops/kvgitops/test/gitserver"
)

// size is a generated repository's shape.
type size struct {
	name           string
	commits, files int
	tags           int
}

var sizes = map[string]size{
	"small":  {"small", 50, 100, 0},
	"medium": {"medium", 5000, 5000, 0},
	"large":  {"large", 50000, 20000, 1000},
	// refs100k: a small history with 100,000 tags, as a repository that
	// tags every build has.
	"refs100k": {"refs100k", 10, 10, 100000},
}

// generate writes a bare repository with git fast-import: one commit with
// every file (and the desired file), then commits that each change one file.
func generate(srv *gitserver.Server, sz size) (time.Duration, error) {
	start := time.Now()
	name := sz.name + ".git"
	if err := srv.CreateRepo(name); err != nil {
		return 0, err
	}
	dir := filepath.Join(srv.Root, name)
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = dir
	cmd.Env = gitserver.GitEnv(dir)
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(in, 1<<20)
	blob := func(mark int, content string) {
		fmt.Fprintf(w, "blob\nmark :%d\ndata %d\n%s\n", mark, len(content), content)
	}
	content := func(i, rev int) string {
		return fmt.Sprintf("# file %d revision %d\nkey: value-%d-%d\nlist: [a, b, c]\n", i, rev, i, rev)
	}
	desired := "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n  version: v1.8.4\n"
	for i := 0; i < sz.files; i++ {
		blob(i+1, content(i, 0))
	}
	blob(sz.files+1, desired)
	when := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	commit := func(n int, msg string, files func()) {
		fmt.Fprintf(w, "commit refs/heads/main\nmark :%d\ncommitter Generator <gen@example.com> %d +0000\ndata %d\n%s\n",
			1_000_000+n, when+int64(n), len(msg), msg)
		if n > 0 {
			fmt.Fprintf(w, "from :%d\n", 1_000_000+n-1)
		}
		files()
	}
	commit(0, "initial", func() {
		for i := 0; i < sz.files; i++ {
			fmt.Fprintf(w, "M 100644 :%d dir%03d/file%05d.yaml\n", i+1, i%100, i)
		}
		fmt.Fprintf(w, "M 100644 :%d kubevirt.yaml\n", sz.files+1)
	})
	for n := 1; n < sz.commits; n++ {
		i := n % sz.files
		c := content(i, n)
		commit(n, fmt.Sprintf("change %d", n), func() {
			fmt.Fprintf(w, "M 100644 inline dir%03d/file%05d.yaml\ndata %d\n%s\n", i%100, i, len(c), c)
		})
	}
	for t := 0; t < sz.tags; t++ {
		fmt.Fprintf(w, "reset refs/tags/v%d\nfrom :%d\n\n", t, 1_000_000+t%sz.commits)
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	_ = in.Close()
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("fast-import: %w", err)
	}
	if _, err = gitserver.Git(context.Background(), dir, nil, "repack", "-adq"); err != nil {
		return 0, err
	}
	_, err = gitserver.Git(context.Background(), dir, nil, "pack-refs", "--all") // as a hosted repository keeps them
	return time.Since(start), err
}
