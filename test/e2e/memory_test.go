package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/stack"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// The status file is output only: these tests edit, rewind or replay what
// is in Git, restart the built binary (a leader change), and check that
// what the new process does comes from the agent's memory in the cluster.

// identity is the replica identity an agent logged when it started.
func (e *e2e) identity(a *stack.Agent) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
	defer cancel()
	l, err := a.WaitLine(ctx, func(l stack.Line) bool { return l.Msg() == "Agent starting" })
	if err != nil {
		e.t.Fatal(err)
	}
	return l.Str("identity")
}

// kubevirtWrites lists what the agent with identity wrote to the KubeVirt CR.
func (e *e2e) kubevirtWrites(identity string) []testenv.AuditEvent {
	e.t.Helper()
	writes, err := testenv.AuditLog(auditDir, identity)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []testenv.AuditEvent
	for _, w := range writes {
		if w.ObjectRef.Resource == "kubevirts" {
			out = append(out, w)
		}
	}
	return out
}

// memory reads the agent's memory from its ConfigMap.
func (e *e2e) memory() agent.Memory {
	e.t.Helper()
	cm, err := kubernetes.NewForConfigOrDie(e.st.Admin).CoreV1().ConfigMaps("kvgitops").Get(e.t.Context(), stack.MemoryConfigMap, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := agent.ParseMemory([]byte(cm.Data["memory.json"]))
	if err != nil {
		e.t.Fatalf("the memory does not parse: %v", err)
	}
	return m
}

// TestAForgedStatusFileDecidesNothing (trust boundary, finding 1): a
// writer without any key edits the status file so that `applied` names
// another registry, then the leader changes. Under spec.drift Correct the
// new leader would "correct" KubeVirt onto that registry if it believed the
// file; it acts on its memory in the cluster instead: nothing is written to
// the KubeVirt CR, and the status file says what the agent applied.
func TestAForgedStatusFileDecidesNothing(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.7.4\n  drift: Correct\n", "install")
	first := e.agent(stack.AgentOptions{Name: "first"})
	st := e.wait(func(s agent.Status) bool { return s.Reason == "UpToDate" && s.Applied != nil }, "applied recorded")
	first.Stop()

	forged := st
	applied := *st.Applied
	applied.ImageRegistry, applied.ImageTag = "evil.example.com/kubevirt", "v1.7.4"
	forged.Applied = &applied
	data, err := agent.Render(forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Human.CommitFile("status/e2e.yaml", data, "nothing to see here"); err != nil {
		t.Fatal(err)
	}
	second := e.agent(stack.AgentOptions{Name: "second"})
	id := e.identity(second)
	e.polls(4)
	now := e.wait(func(s agent.Status) bool { return s.Applied != nil && s.Applied.ImageRegistry == "" }, "the status file rewritten from memory")
	if now.Phase != agent.PhaseSucceeded || now.Reason != "UpToDate" || len(now.Drift) != 0 {
		t.Errorf("after the forged status: %s %s %q, drift %+v", now.Phase, now.Reason, now.Message, now.Drift)
	}
	if w := e.kubevirtWrites(id); len(w) != 0 {
		t.Errorf("the new leader wrote the KubeVirt CR: %v", w)
	}
	if r := e.registry(); r != "" {
		t.Errorf("spec.imageRegistry %q", r)
	}
}

// TestOlderSignedContentStaysRefusedAfterARestart (finding 2): signed
// `state: Absent`, then signed v1.7.4 (installed); an unsigned "ours" merge
// on top of the old signed commit brings Absent back. The running agent
// refuses it (and publishes the refusal, which says nothing of what it
// accepted before); the next leader must refuse it too, from the anchor in
// its memory: KubeVirt stays.
func TestOlderSignedContentStaysRefusedAfterARestart(t *testing.T) {
	e := setup(t, stack.Options{})
	pub := e.sshSigningKey()
	key := strings.TrimSuffix(pub, ".pub")
	sign := []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + key, "-c", "commit.gpgsign=true"}
	git := func(args ...string) string {
		t.Helper()
		out, err := e.st.Human.Git(args...)
		if err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
		return strings.TrimSpace(out)
	}
	// push retries as a person would while the agent pushes status
	// commits: build on the new head (prepare), then push.
	push := func(prepare func()) {
		t.Helper()
		for attempt := 0; ; attempt++ {
			prepare()
			if _, err := e.st.Human.Git("push", "-q", "origin", "HEAD:main"); err == nil {
				return
			} else if attempt == 10 {
				t.Fatal(err)
			}
		}
	}
	signed := func(spec, msg string) string {
		t.Helper()
		push(func() {
			if err := e.st.Human.Pull(); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(e.st.Human.Dir(), "kubevirt.yaml"), stack.DesiredFile(spec), 0o644); err != nil {
				t.Fatal(err)
			}
			git("add", "kubevirt.yaml")
			git(append(sign, "commit", "-q", "-m", msg)...)
		})
		return git("rev-parse", "HEAD")
	}
	verify := []string{"--verify-ssh-keys", pub}
	old := signed("  state: Absent\n", "signed: no KubeVirt here")
	first := e.agent(stack.AgentOptions{Name: "first", Extra: verify})
	e.wait(func(s agent.Status) bool {
		return s.Phase == agent.PhaseIdle && s.Desired != nil && s.Desired.State == "Absent"
	}, "Absent, nothing to do")
	signed("  version: v1.7.4\n", "signed: install")
	e.succeeded("v1.7.4")

	// The replay: an unsigned merge whose first parent is the old signed
	// commit (its tree, so its kubevirt.yaml).
	push(func() {
		git("fetch", "-q", "origin")
		git("checkout", "-q", "--detach", old)
		git("-c", "user.name=mallory", "-c", "user.email=m@example.com", "-c", "commit.gpgsign=false", "merge", "-q", "-s", "ours", "origin/main", "-m", "merge")
	})
	e.wait(func(s agent.Status) bool { return s.Reason == "StaleSignedContent" }, "the replay refused")
	first.Stop()

	second := e.agent(stack.AgentOptions{Name: "second", Extra: verify})
	id := e.identity(second)
	e.polls(5)
	st := e.wait(func(s agent.Status) bool { return s.Reason == "StaleSignedContent" }, "the replay refused after a restart")
	if st.Phase != agent.PhaseInvalid {
		t.Errorf("phase %s", st.Phase)
	}
	if w := e.kubevirtWrites(id); len(w) != 0 {
		t.Errorf("the new leader wrote the KubeVirt CR: %v", w)
	}
	if !e.present(kvGVR, "kubevirt", "kubevirt") || e.st.Sim.Count(simulator.DeletionStarted) != 0 {
		t.Errorf("KubeVirt was torn down by replayed content")
	}
}

// TestGitDownAcrossARestartLosesNothing (F8, with a restart): Git fails
// (it lists the branch but serves no object) while the leader changes. The
// new leader applies nothing and keeps what the last one knew: once Git is
// back, the history is still in the status file.
func TestGitDownAcrossARestartLosesNothing(t *testing.T) {
	e := setup(t, stack.Options{})
	e.commit("  version: v1.7.4\n", "install")
	first := e.agent(stack.AgentOptions{Name: "first"})
	st := e.succeeded("v1.7.4")
	if len(st.History) != 1 {
		t.Fatalf("history %+v", st.History)
	}
	first.Stop()

	var down atomic.Bool
	down.Store(true)
	var refused atomic.Int64
	// Half down, as a struggling server or proxy is: the branch can be
	// listed, nothing can be fetched or pushed.
	e.st.Git.Filter(func(w http.ResponseWriter, r *http.Request) bool {
		if !down.Load() {
			return false
		}
		head := make([]byte, 32)
		n, _ := io.ReadFull(r.Body, head)
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(head[:n]), r.Body))
		if strings.HasSuffix(r.URL.Path, "/info/refs") || strings.HasSuffix(r.URL.Path, "/git-upload-pack") && bytes.Contains(head[:n], []byte("command=ls-refs")) {
			return false
		}
		refused.Add(1)
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return true
	})
	second := e.agent(stack.AgentOptions{Name: "second"})
	id := e.identity(second)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for n := 0; n < 2; n++ {
		if _, err := second.WaitLine(ctx, func(l stack.Line) bool {
			return l.Msg() == "Reconcile failed" && strings.Contains(l.Str("error"), "GitUnavailable") && refused.Load() > int64(n)
		}); err != nil {
			t.Fatal(err)
		}
	}
	down.Store(false)
	e.settleAndCountCommits(4)
	st = e.wait(stack.Phase(agent.PhaseSucceeded, "v1.7.4"), "Succeeded again")
	if len(st.History) != 1 || st.History[0].To != "v1.7.4" || st.History[0].Result != agent.RunSucceeded {
		t.Errorf("the history after Git came back: %+v", st.History)
	}
	if w := e.kubevirtWrites(id); len(w) != 0 {
		t.Errorf("the new leader wrote the KubeVirt CR: %v", w)
	}
}

// TestTheMemoryLivesInTheCluster: what the agent must remember is in its
// ConfigMap, written with resourceVersion preconditions, and an agent
// upgraded from a version that kept it in the status file migrates it once.
func TestTheMemoryLivesInTheCluster(t *testing.T) {
	e := setup(t, stack.Options{})
	head := e.commit("  version: v1.7.4\n", "install")
	a := e.agent(stack.AgentOptions{})
	e.succeeded("v1.7.4")
	// The memory records what was published right after the push: the
	// status can be in Git a moment before. Stopped in between, the next
	// agent publishes it again (by its ID); here it is let finish.
	for deadline := time.Now().Add(30 * time.Second); len(e.memory().Journal) != 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	a.Stop()
	m := e.memory()
	if m.Applied == nil || m.Applied.Version != "v1.7.4" || len(m.History) != 1 || m.Seen == "" || m.Desired == nil || !strings.HasSuffix(m.Desired.Revision, head) {
		t.Errorf("memory %+v", m)
	}
	if len(m.Journal) != 0 || len(m.Published) == 0 {
		t.Errorf("journal: %d pending (want none once pushed), %d published", len(m.Journal), len(m.Published))
	}

	// An agent of the earlier version: its memory is the status file.
	if err := stack.ForgetMemory(t.Context(), e.st.Admin); err != nil {
		t.Fatal(err)
	}
	b := e.agent(stack.AgentOptions{Name: "upgraded"})
	if _, err := b.WaitLine(t.Context(), func(l stack.Line) bool { return l.Msg() == "Memory migrated from the status file" }); err != nil {
		t.Fatal(err)
	}
	e.settleAndCountCommits(3)
	m = e.memory()
	if m.MigratedFrom != "status/e2e.yaml" || m.Applied == nil || len(m.History) != 1 {
		t.Errorf("migrated memory %+v", m)
	}
	if slices.ContainsFunc(b.Lines(), func(l stack.Line) bool { return l.Msg() == "Step started" }) {
		t.Error("the migration started a step")
	}
}
