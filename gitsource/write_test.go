package gitsource_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

func TestStatusCommits(t *testing.T) {
	s := server(t, gitserver.Options{Username: "git", Password: canaryPassword})
	u := user(t, s)
	commit(t, u, "kubevirt.yaml", "desired\n")
	src := source(t, s, map[string]string{"username": "git", "password": canaryPassword}, func(c *gitsource.Config) {
		c.AuthorName, c.AuthorEmail = "kvgitops-agent", "agent@example.com"
	})
	ctx := context.Background()
	rev, err := src.WriteFile(ctx, "status/prod-east.yaml", []byte("phase: Idle\n"), "status: prod-east Idle")
	if err != nil {
		t.Fatal(allErrors.add(err))
	}
	if got, _ := s.Show("main", "status/prod-east.yaml"); got != "phase: Idle" {
		t.Errorf("status on the server %q", got)
	}
	if got, _ := s.Show("main", "kubevirt.yaml"); got != "desired" {
		t.Errorf("the desired file changed: %q", got)
	}
	log, _ := s.Log("")
	if len(log) != 2 || !strings.Contains(log[0], "kvgitops-agent: status: prod-east Idle") || !strings.HasPrefix(log[0], rev.Commit()) {
		t.Errorf("log %v", log)
	}
	// The same bytes again: no commit.
	if _, err := src.WriteFile(ctx, "status/prod-east.yaml", []byte("phase: Idle\n"), "again"); !errors.Is(err, gitsource.ErrUnchanged) {
		t.Errorf("unchanged write: %v, want ErrUnchanged", err)
	}
	if log, _ := s.Log(""); len(log) != 2 {
		t.Errorf("an unchanged write made a commit: %v", log)
	}
	// A second cluster's status next to it keeps the first.
	if _, err := src.WriteFile(ctx, "status/prod-west.yaml", []byte("phase: Idle\n"), "west"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Show("main", "status/prod-east.yaml"); got != "phase: Idle" {
		t.Errorf("the other status file was lost: %q", got)
	}
	if out, err := u.Git("fsck", "--strict"); err != nil {
		t.Errorf("git fsck after status commits: %v %s", err, out)
	}
}

func TestStatusIntoAnEmptyRepository(t *testing.T) {
	s := server(t, gitserver.Options{})
	src := source(t, s, nil)
	if _, err := src.WriteFile(context.Background(), "status/c.yaml", []byte("x\n"), "first"); err != nil {
		t.Fatal(err)
	}
	if log, _ := s.Log(""); len(log) != 1 {
		t.Errorf("log %v", log)
	}
}

func TestConcurrentWriterIsRebasedOnNotOverwritten(t *testing.T) {
	s := server(t, gitserver.Options{})
	u := user(t, s)
	commit(t, u, "kubevirt.yaml", "desired\n")
	src := source(t, s, nil)
	// A human pushes between the agent reading the head and its push, twice.
	var raced atomic.Int32
	s.Filter(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/git-receive-pack") && raced.Add(1) <= 2 {
			if _, err := u.CommitFile("notes.md", []byte("human edit "+string(rune('0'+raced.Load()))+"\n"), "human commit"); err != nil {
				t.Error(err)
			}
		}
		return false
	})
	if _, err := src.WriteFile(context.Background(), "status/c.yaml", []byte("phase: Succeeded\n"), "status"); err != nil {
		t.Fatal(allErrors.add(err))
	}
	log, _ := s.Log("")
	if len(log) != 4 || !strings.Contains(log[0], "status") || !strings.Contains(log[1], "human commit") || !strings.Contains(log[2], "human commit") {
		t.Errorf("log after racing pushes %v: want both human commits under the status commit", log)
	}
	if got, _ := s.Show("main", "notes.md"); got != "human edit 2" {
		t.Errorf("the human's file %q", got)
	}
}

func TestPushForbiddenIsTerminal(t *testing.T) {
	s := server(t, gitserver.Options{})
	commit(t, user(t, s), "kubevirt.yaml", "desired\n")
	s.Filter(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.RawQuery, "git-receive-pack") || strings.HasSuffix(r.URL.Path, "git-receive-pack") {
			http.Error(w, "branch is protected", http.StatusForbidden)
			return true
		}
		return false
	})
	_, err := source(t, s, nil).WriteFile(context.Background(), "status/c.yaml", []byte("x\n"), "status")
	allErrors.add(err)
	wantReason(t, err, gitsource.ReasonStatusPushForbidden)
	if !fault.Stalls(err) {
		t.Error("a forbidden push should be terminal")
	}
}

// TestAHookThatDeclinesIsTerminal: a push the server answers with a
// refusal in its report (a pre-receive hook, as branch protection is
// implemented) is StatusPushForbidden, read from the command's status, not
// from the error text.
func TestAHookThatDeclinesIsTerminal(t *testing.T) {
	s := server(t, gitserver.Options{})
	commit(t, user(t, s), "kubevirt.yaml", "desired\n")
	hook := filepath.Join(s.Root, "repo.git", "hooks", "pre-receive")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho 'protected: status commits need review' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := source(t, s, nil).WriteFile(context.Background(), "status/c.yaml", []byte("x\n"), "status")
	allErrors.add(err)
	wantReason(t, err, gitsource.ReasonStatusPushForbidden)
	if !fault.Stalls(err) || !strings.Contains(err.Error(), "hook declined") {
		t.Errorf("a declined push: %v, want terminal and the server's status", err)
	}
}

func TestForcePushedHistoryDoesNotDescend(t *testing.T) {
	s := server(t, gitserver.Options{})
	u := user(t, s)
	root := commit(t, u, "kubevirt.yaml", "v1\n")
	applied := commit(t, u, "kubevirt.yaml", "v2\n")
	src := source(t, s, nil)
	ctx := context.Background()
	appliedRev := head(t, src)
	for i := 0; i < 3; i++ {
		commit(t, u, "status.txt", strings.Repeat("s", i+1))
	}
	ok, err := src.Descends(ctx, head(t, src), appliedRev)
	if err != nil || !ok {
		t.Fatalf("a fast-forward does not descend: %v %v", ok, err)
	}
	// Somebody resets the branch to before the applied commit and commits on it.
	if err := s.ForcePush(root); err != nil {
		t.Fatal(err)
	}
	u2 := user(t, s)
	commit(t, u2, "kubevirt.yaml", "v1-rewritten\n")
	ok, err = src.Descends(ctx, head(t, src), appliedRev)
	if err != nil || ok {
		t.Fatalf("rewritten history descends from %s: %v %v", applied[:7], ok, err)
	}
	// An older commit served again (stale replica) does not descend either.
	if ok, _ := src.Descends(ctx, gitsource.Revision("main@sha1:"+root), appliedRev); ok {
		t.Error("an ancestor of the applied commit counts as descending")
	}
}

func TestAFastForwardIsCheckedWithoutWalkingHistory(t *testing.T) {
	s := server(t, gitserver.Options{})
	u := user(t, s)
	commit(t, u, "kubevirt.yaml", "v1\n")
	src := source(t, s, nil)
	ctx := context.Background()
	old := head(t, src)
	if _, err := read(t, src, old, "kubevirt.yaml"); err != nil {
		t.Fatal(err)
	}
	commit(t, u, "kubevirt.yaml", "v2\n")
	packs := s.Fetches()
	rev := head(t, src)
	if ok, err := src.Descends(ctx, rev, old); err != nil || !ok {
		t.Fatalf("a one-commit fast-forward: %v %v", ok, err)
	}
	if got, err := read(t, src, rev, "kubevirt.yaml"); err != nil || got != "v2\n" {
		t.Fatalf("read: %q %v", got, err)
	}
	if n := s.Fetches() - packs; n != 2 {
		t.Errorf("ancestry check and read took %d fetches, want 2 (the commit with its root tree, then the changed blob; no history walk)", n)
	}
}
