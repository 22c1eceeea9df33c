package agent_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

// TestVerificationIsNotRepeatedForStatusCommits: the agent's own status
// commits move the head; the signed desired file is verified once, not on
// every new head.
func TestVerificationIsNotRepeatedForStatusCommits(t *testing.T) {
	git, human := gitWithUser(t)
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
	if _, signer, err := repo.Read(ctx, rev, "kubevirt.yaml"); err != nil || !strings.HasPrefix(signer.Signer, "ssh:") {
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
		if err != nil || !strings.HasPrefix(signer.Signer, "ssh:") {
			t.Fatalf("read at a status commit: %q %v", signer, err)
		}
		if n := git.Fetches() - packs; n != 0 {
			t.Errorf("status commit %d: poll and read took %d fetches, want 0", i+1, n)
		}
		rev = next
	}
}

// TestOlderSignedContentCannotComeBack is the replay attack: a writer
// without the signing key checks out an old signed commit, merges the
// branch into it with "-s ours" and pushes. The push is a fast-forward and
// the first-parent walk finds the old signed commit as the setter; the
// agent must refuse it, in this process and after a restart, and accept
// new signed content on top of the merge.
func TestOlderSignedContentCannotComeBack(t *testing.T) {
	git, human := gitWithUser(t)
	key := filepath.Join(t.TempDir(), "signing")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, _ := os.ReadFile(key + ".pub")
	run := func(args ...string) string {
		t.Helper()
		out, err := human.Git(args...)
		if err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
		return strings.TrimSpace(out)
	}
	signed := func(version string) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(human.Dir(), "kubevirt.yaml"), []byte(header+"  version: "+version+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		run("add", "kubevirt.yaml")
		run("-c", "gpg.format=ssh", "-c", "user.signingkey="+key, "commit", "-q", "-S", "-m", "signed "+version)
		run("push", "-q", "origin", "HEAD:main")
		return run("rev-parse", "HEAD")
	}
	newRepo := func() *agent.GitRepo {
		src, err := gitsource.New(gitsource.Config{URL: git.URL(), Auth: gitsource.Auth{CA: git.CertPool()},
			Verify: &gitsource.VerifyConfig{SSHKeys: []string{strings.TrimSpace(string(pub))}}})
		if err != nil {
			t.Fatal(err)
		}
		return &agent.GitRepo{Source: src, DesiredPath: "kubevirt.yaml"}
	}
	ctx := context.Background()
	repo := newRepo()
	readAt := func(r *agent.GitRepo) (string, agent.Provenance, error) {
		t.Helper()
		head, err := r.Head(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		data, from, err := r.Read(ctx, head, "kubevirt.yaml")
		return string(data), from, err
	}

	old := signed("v1.7.0")
	if _, from, err := readAt(repo); err != nil || !strings.HasSuffix(from.SetBy, old) {
		t.Fatalf("first signed content: %+v %v", from, err)
	}
	current := signed("v1.8.4")
	if _, from, err := readAt(repo); err != nil || !strings.HasSuffix(from.SetBy, current) {
		t.Fatalf("second signed content: %+v %v", from, err)
	}

	// The attack: an unsigned "ours" merge on top of the old signed commit.
	run("checkout", "-q", old)
	run("-c", "user.name=mallory", "-c", "user.email=m@example.com", "merge", "-q", "-s", "ours", "origin/main", "-m", "merge")
	run("push", "-q", "origin", "HEAD:main")
	data, _, err := readAt(repo)
	if fault.ReasonOf(err) != gitsource.ReasonStaleSignedContent || !fault.Stalls(err) {
		t.Fatalf("the replayed old content was read: %q %v", data, err)
	}
	if !strings.Contains(err.Error(), old[:7]) || !strings.Contains(err.Error(), current[:7]) {
		t.Errorf("the refusal should name both commits: %v", err)
	}
	// After a restart the agent's memory carries the same protection.
	restarted := newRepo()
	restarted.Accepted("kubevirt.yaml", "main@sha1:"+current)
	if _, _, err := readAt(restarted); fault.ReasonOf(err) != gitsource.ReasonStaleSignedContent {
		t.Fatalf("after a restart: %v", err)
	}

	// New signed content on top of the merge moves forward again.
	newest := signed("v1.8.4\n  method: ImageTag")
	for _, r := range []*agent.GitRepo{repo, restarted} {
		if got, from, err := readAt(r); err != nil || !strings.HasSuffix(from.SetBy, newest) || !strings.Contains(got, "ImageTag") {
			t.Fatalf("new signed content after the merge: %q %+v %v", got, from, err)
		}
	}
}

// TestTheRisksFileMustBeSignedLikeTheDesiredFile: when the desired file must
// be signed, so must the risks file beside it (it steers the path, e.g. a
// hop planned around a "blocking" risk): an unsigned one is refused naming
// the file; a signed one is read with its signer.
func TestTheRisksFileMustBeSignedLikeTheDesiredFile(t *testing.T) {
	git, human := gitWithUser(t)
	key := filepath.Join(t.TempDir(), "signing")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, _ := os.ReadFile(key + ".pub")
	commit := func(path, content string, sign bool) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(human.Dir(), path), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"-c", "commit.gpgsign=false", "commit", "-q", "-m", path}
		if sign {
			args = []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + key, "commit", "-q", "-S", "-m", path}
		}
		for _, a := range [][]string{{"add", path}, args, {"push", "-q", "origin", "HEAD:main"}} {
			if out, err := human.Git(a...); err != nil {
				t.Fatalf("git %v: %v %s", a, err, out)
			}
		}
	}
	commit("kubevirt.yaml", header+"  version: v1.8.4\n", true)
	commit("kubevirt-risks.yaml", "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtUpgradeRisks\nrisks: []\n", false)
	src, err := gitsource.New(gitsource.Config{URL: git.URL(), Auth: gitsource.Auth{CA: git.CertPool()},
		Verify: &gitsource.VerifyConfig{SSHKeys: []string{strings.TrimSpace(string(pub))}}})
	if err != nil {
		t.Fatal(err)
	}
	repo := &agent.GitRepo{Source: src, DesiredPath: "kubevirt.yaml", RisksPath: "kubevirt-risks.yaml"}
	ctx := context.Background()
	head, err := repo.Head(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := repo.Read(ctx, head, "kubevirt.yaml"); err != nil {
		t.Fatalf("the signed desired file: %v", err)
	}
	_, _, err = repo.Read(ctx, head, "kubevirt-risks.yaml")
	if fault.ReasonOf(err) != gitsource.ReasonSignatureInvalid || !strings.Contains(err.Error(), "kubevirt-risks.yaml on main") || !strings.Contains(err.Error(), "is not signed") {
		t.Fatalf("an unsigned risks file: %v, want SignatureInvalid naming kubevirt-risks.yaml", err)
	}
	commit("kubevirt-risks.yaml", "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtUpgradeRisks\nrisks: []\n# signed\n", true)
	if head, err = repo.Head(ctx, head); err != nil {
		t.Fatal(err)
	}
	if _, from, err := repo.Read(ctx, head, "kubevirt-risks.yaml"); err != nil || !strings.HasPrefix(from.Signer, "ssh:") {
		t.Fatalf("a signed risks file: %+v %v", from, err)
	}
}

// TestPeerReadsDoNotGrowWithTheRing: reading 3 peers and reading 12 cost
// the same requests on the real git server — cold (an ls-refs and one
// fetch, beside the connection's probe), steady (one ls-refs), and after
// one peer moved (an ls-refs and one fetch); every peer's verdict is right.
func TestPeerReadsDoNotGrowWithTheRing(t *testing.T) {
	git, human := gitWithUser(t)
	if _, err := human.CommitFile("fleet.yaml", []byte("fleet\n"), "fleet"); err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	write := func(c, message string) {
		t.Helper()
		signer, pub := peerSigner(t, c)
		keys[c] = pub
		src, err := gitsource.New(gitsource.Config{URL: git.URL(), Auth: gitsource.Auth{CA: git.CertPool()}, StatusBranch: agent.PeerBranch(c), Signer: signer})
		if err != nil {
			t.Fatal(err)
		}
		st := agent.Status{APIVersion: agent.StatusAPIVersion, Kind: agent.StatusKind, Cluster: c, Phase: agent.PhaseSucceeded, Message: message}
		data, err := agent.Render(st)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.WriteFile(context.Background(), agent.PeerStatusPath(c), data, "status("+c+")"); err != nil {
			t.Fatal(err)
		}
	}
	var costs [][3]int64
	for _, n := range []int{3, 12} {
		peers := map[string]string{}
		for i := range n {
			c := "ring" + string(rune('a'+n)) + "-" + string(rune('a'+i))
			write(c, "first")
			peers[c] = keys[c]
		}
		src, err := gitsource.New(gitsource.Config{URL: git.URL(), Auth: gitsource.Auth{CA: git.CertPool()}})
		if err != nil {
			t.Fatal(err)
		}
		repo := &agent.GitRepo{Source: src}
		var cost [3]int64
		for pass := range 3 {
			if pass == 2 {
				for c := range peers {
					write(c, "moved") // one peer moves, signed by its same key
					break
				}
			}
			before := git.InfoRefs() + git.UploadPacks()
			reads, err := repo.PeerStatuses(context.Background(), peers)
			if err != nil || len(reads) != n {
				t.Fatalf("%d peers, pass %d: %d reads, %v", n, pass, len(reads), err)
			}
			for c, r := range reads {
				if st, err := agent.ParsePeerStatus(r.Data); r.Err != nil || err != nil || st.Cluster != c {
					t.Errorf("%s: %v %v", c, r.Err, err)
				}
			}
			cost[pass] = git.InfoRefs() + git.UploadPacks() - before
		}
		costs = append(costs, cost)
	}
	if costs[0] != costs[1] || costs[0][1] != 1 || costs[0][2] != 2 {
		t.Errorf("requests per pass (cold, steady, one moved): 3 peers %v, 12 peers %v; want the same, steady 1, one moved 2", costs[0], costs[1])
	}
}

// peerSigners hold each peer's status-signing key and its public half: a
// peer signs all its commits with one key.
var peerSigners = map[string]struct {
	signer *gitsource.CommitSigner
	pub    string
}{}

// peerSigner is cluster's key and its public half.
func peerSigner(t *testing.T, cluster string) (*gitsource.CommitSigner, string) {
	t.Helper()
	k, ok := peerSigners[cluster]
	if !ok {
		var err error
		if k.signer, k.pub, err = gitserver.StatusKey(); err != nil {
			t.Fatal(err)
		}
		peerSigners[cluster] = k
	}
	return k.signer, k.pub
}

// gitWithUser is a git server for the test and a person's clone of it.
func gitWithUser(t *testing.T) (*gitserver.Server, *gitserver.User) {
	t.Helper()
	git, err := gitserver.New(gitserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(git.Close)
	human, err := git.User()
	if err != nil {
		t.Fatal(err)
	}
	return git, human
}
