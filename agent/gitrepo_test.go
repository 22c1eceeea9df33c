package agent_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

// TestVerificationIsNotRepeatedForStatusCommits: the agent's own status
// commits move the head; the signed desired file is verified once, not on
// every new head.
func TestVerificationIsNotRepeatedForStatusCommits(t *testing.T) {
	git, err := gitserver.New(gitserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer git.Close()
	human, err := git.User()
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "signing")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, _ := os.ReadFile(key + ".pub")
	if err := os.WriteFile(filepath.Join(human.Dir(), "kubevirt.yaml"), []byte(header+"  version: v1.8.4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"add", "kubevirt.yaml"}, {"-c", "gpg.format=ssh", "-c", "user.signingkey=" + key, "commit", "-q", "-S", "-m", "signed"}, {"push", "-q", "origin", "HEAD:main"}} {
		if out, err := human.Git(args...); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	src, err := gitsource.New(gitsource.Config{URL: git.URL(), Auth: gitsource.Auth{CA: git.CertPool()},
		Verify: &gitsource.VerifyConfig{SSHKeys: []string{strings.TrimSpace(string(pub))}}})
	if err != nil {
		t.Fatal(err)
	}
	repo := &agent.GitRepo{Source: src, DesiredPath: "kubevirt.yaml"}
	ctx := context.Background()
	rev, err := repo.Head(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, signer, err := repo.Read(ctx, rev, "kubevirt.yaml"); err != nil || !strings.HasPrefix(signer, "ssh:") {
		t.Fatalf("first read: %q %v", signer, err)
	}
	for i := 0; i < 3; i++ {
		if err := repo.Write(ctx, "status/c.yaml", []byte{byte('a' + i), '\n'}, "status"); err != nil {
			t.Fatal(err)
		}
		packs := git.Fetches()
		next, err := repo.Head(ctx, rev)
		if err != nil {
			t.Fatal(err)
		}
		_, signer, err := repo.Read(ctx, next, "kubevirt.yaml")
		if err != nil || !strings.HasPrefix(signer, "ssh:") {
			t.Fatalf("read at a status commit: %q %v", signer, err)
		}
		if n := git.Fetches() - packs; n != 0 {
			t.Errorf("status commit %d: poll and read took %d fetches, want 0", i+1, n)
		}
		rev = next
	}
}
