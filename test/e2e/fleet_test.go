package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/stack"
	"github.com/kvgitops/kvgitops/test/testenv"
)

const fleetSoak = 3 * time.Second

// fleetFile is the fleet file of the three clusters, with their status
// keys.
func fleetFile(version, extra string, keys map[string]string) []byte {
	return []byte("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtFleet\nspec:\n" +
		"  kubevirt: {version: " + version + extra + "}\n" +
		"  rings:\n" +
		"  - {name: canary, clusters: [lab-1], soak: 3s}\n" +
		"  - {name: staging, clusters: [eu-2], soak: 3s}\n" +
		"  - {name: prod, clusters: [ap-1]}\n" +
		"  statusKeys:\n" +
		"    lab-1: " + keys["lab-1"] + "\n" +
		"    eu-2: " + keys["eu-2"] + "\n" +
		"    ap-1: " + keys["ap-1"] + "\n")
}

// statusSigning makes cluster's status-signing key: the flags that sign
// its status commits with it, and its public key for the fleet file.
func (e *e2e) statusSigning(cluster string) ([]string, string) {
	e.t.Helper()
	pubPath := e.sshSigningKey()
	dir := e.t.TempDir()
	key, err := os.ReadFile(strings.TrimSuffix(pubPath, ".pub"))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "identity"), key, 0o600); err != nil {
		e.t.Fatal(err)
	}
	pub, err := os.ReadFile(pubPath)
	if err != nil {
		e.t.Fatal(err)
	}
	return []string{"--status-signing", "ssh", "--status-signing-secret-dir", dir}, strings.TrimSpace(string(pub))
}

// TestFleetRollsOutRingByRing runs three clusters, each its own apiserver
// with the simulator, in three rings of one fleet file, with Git as the
// only thing they share: the canary goes first, staging after the canary's
// soak, prod after staging's; a failed canary halts the others, and its
// fix lets them go on.
func TestFleetRollsOutRingByRing(t *testing.T) {
	f := newFleet(setup(t, stack.Options{}), "lab-1", "eu-2", "ap-1")
	f.commit(fleetFile("v1.6.6", "", f.keys), "fleet: install v1.6.6")
	for _, c := range f.order {
		f.start(c)
	}
	f.rolledOut("v1.6.6")
	f.aFailedCanaryHaltsTheOthers()
	f.gitHoldsTheStory()

	// `fleet status` reads the same repository and finds the fleet done.
	if out, err := f.status(); err != nil || !strings.Contains(out, "prod     Done   1/1") || !strings.Contains(out, "): healthy") {
		t.Errorf("fleet status: %v\n%s", err, out)
	}

	// A canary restarted after finishing remembers it finished (its memory
	// is in its cluster, not on the branch it writes).
	before := f.wait("lab-1", stack.Phase(agent.PhaseSucceeded, "v1.7.4"), "the canary's status")
	f.agents["lab-1"].Stop()
	f.start("lab-1")
	f.e.polls(4)
	if st := f.wait("lab-1", func(s agent.Status) bool { return true }, "the canary's status"); st.Phase != agent.PhaseSucceeded || len(st.History) != len(before.History) {
		t.Errorf("the canary after a restart: %s %s, %d runs in its history, want Succeeded and %d", st.Phase, st.Reason, len(st.History), len(before.History))
	}

	f.aForgedCanaryMovesNobody()
	// The canary comes back, writes its own signed status over it, and the
	// rollout goes on ring by ring.
	f.start("lab-1")
	f.rolledOut("v1.8.4")
}

// fleet is TestFleetRollsOutRingByRing's world: clusters, each its own
// apiserver with the simulator, in rings of one fleet file, with Git as
// the only thing they share.
type fleet struct {
	e           *e2e
	order       []string // canary first
	sims        map[string]*simulator.Simulator
	kubeconfigs map[string]string
	keys        map[string]string   // cluster → public key its status is signed with
	flags       map[string][]string // cluster → its agent's fleet flags
	agents      map[string]*stack.Agent
}

// newFleet starts an apiserver with the simulator for every cluster but
// the first (which is the stack's own).
func newFleet(e *e2e, order ...string) *fleet {
	t := e.t
	f := &fleet{e: e, order: order, sims: map[string]*simulator.Simulator{order[0]: e.st.Sim}, kubeconfigs: map[string]string{order[0]: e.st.Kubeconfig},
		keys: map[string]string{}, flags: map[string][]string{}, agents: map[string]*stack.Agent{}}
	for _, name := range order[1:] {
		env, err := testenv.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Stop() })
		c, err := e.st.AddCluster(t.Context(), name, env.Config, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Sim.Stop) // before its apiserver, which waits for open watches
		f.sims[name], f.kubeconfigs[name] = c.Sim, c.Kubeconfig
	}
	for _, c := range order {
		flags, pub := e.statusSigning(c)
		f.flags[c], f.keys[c] = append([]string{"--fleet-path", "fleet.yaml"}, flags...), pub
	}
	return f
}

func (f *fleet) start(c string) {
	f.agents[c] = f.e.agent(stack.AgentOptions{Name: c, ClusterName: c, Kubeconfig: f.kubeconfigs[c], Extra: f.flags[c]})
}

func (f *fleet) commit(data []byte, msg string) {
	f.e.t.Helper()
	if _, err := f.e.st.Human.CommitFile("fleet.yaml", data, msg); err != nil {
		f.e.t.Fatal(err)
	}
}

func (f *fleet) wait(cluster string, cond func(agent.Status) bool, what string) agent.Status {
	f.e.t.Helper()
	ctx, cancel := context.WithTimeout(f.e.t.Context(), 2*time.Minute)
	defer cancel()
	st, err := f.e.st.WaitStatus(ctx, cluster, cond)
	if err != nil {
		f.e.t.Fatalf("%s: waiting for %s: %v; phase %s %s: %s", cluster, what, err, st.Phase, st.Reason, st.Message)
	}
	return st
}

// rolledOut waits for every cluster to succeed at version, ring by ring.
func (f *fleet) rolledOut(version string) {
	for _, c := range f.order {
		f.wait(c, stack.Phase(agent.PhaseSucceeded, version), version)
	}
	assertRingOrder(f.e.t, f.sims, f.order, version)
}

// status runs `fleet status` on the repository.
func (f *fleet) status() (string, error) {
	args := []string{"fleet", "status", "--repo-url", f.e.st.Git.URL(), "--git-secret-dir", f.e.st.SecretDir}
	out, err := exec.CommandContext(f.e.t.Context(), binary, args...).CombinedOutput()
	return string(out), err
}

// aFailedCanaryHaltsTheOthers: the canary's hop hangs past its timeout and
// staging and prod halt; once the fault is fixed the canary's hop
// completes and the others follow.
func (f *fleet) aFailedCanaryHaltsTheOthers() {
	t := f.e.t
	f.sims["lab-1"].StallHop("v1.7.4")
	f.commit(fleetFile("v1.7.4", ", hopTimeout: 12s", f.keys), "fleet: v1.7.4")
	f.wait("lab-1", stack.Phase(agent.PhaseFailed, ""), "the canary to fail")
	for _, c := range f.order[1:] {
		st := f.wait(c, func(s agent.Status) bool { return s.Reason == "RolloutHalted" }, "a halt")
		if st.Phase != agent.PhaseWaitingForRing || !strings.Contains(st.Message, "lab-1 (ring canary) is Failed HopTimeout") {
			t.Errorf("%s: %s %s %q", c, st.Phase, st.Reason, st.Message)
		}
	}
	time.Sleep(2 * time.Second) // polls at 1s: nothing may start while halted
	for _, c := range f.order[1:] {
		if hops := f.sims[c].CompletedHops(); len(hops) != 1 || firstTouch(f.sims[c], "v1.7.4") != nil {
			t.Errorf("%s moved while the rollout was halted: %+v", c, f.sims[c].Transitions())
		}
	}
	f.sims["lab-1"].ClearFaults()
	f.rolledOut("v1.7.4")
}

// gitHoldsTheStory: staging committed to its status branch that it waited
// and was halted; no fleet agent committed its status to main.
func (f *fleet) gitHoldsTheStory() {
	t := f.e.t
	log, err := f.e.st.Git.LogOf("status/eu-2", agent.PeerStatusPath("eu-2"))
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(log, "\n")
	for _, want := range []string{"status(eu-2): WaitingForRing WaitingForRing: waiting for ring canary", "status(eu-2): WaitingForRing RolloutHalted: rollout halted: lab-1 (ring canary) is Failed"} {
		if !strings.Contains(joined, want) {
			t.Errorf("the status branch of eu-2 lacks %q:\n%s", want, joined)
		}
	}
	if main, _ := f.e.st.Git.Log(""); strings.Contains(strings.Join(main, "\n"), "kvgitops: status(") {
		t.Errorf("a fleet agent committed its status to main:\n%s", strings.Join(main, "\n"))
	}
}

// aForgedCanaryMovesNobody: peers prove who they are. The canary is down;
// somebody pushes to its branch a status saying it runs the next version,
// Ready for years, then an oversized one: the others name it and wait.
func (f *fleet) aForgedCanaryMovesNobody() {
	t := f.e.t
	f.agents["lab-1"].Stop()
	next := fleetFile("v1.8.4", "", f.keys)
	f.commit(next, "fleet: v1.8.4")
	sum := sha256.Sum256(next)
	forged := agent.Status{Cluster: "lab-1", Phase: agent.PhaseSucceeded, Reason: "UpToDate",
		Desired:    &agent.DesiredSummary{State: "Present", Version: "v1.8.4", Digest: hex.EncodeToString(sum[:])[:16]},
		Observed:   agent.ObservedSummary{Version: "v1.8.4", Available: true},
		Conditions: []agent.Condition{{Type: "Ready", Status: "True", Reason: "UpToDate", LastTransitionTime: agent.NewTimestamp(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))}}}
	data, err := agent.Render(forged)
	if err != nil {
		t.Fatal(err)
	}
	f.e.pushToBranch("status/lab-1", agent.PeerStatusPath("lab-1"), data)
	st := f.wait("eu-2", func(s agent.Status) bool { return strings.Contains(s.Message, "lab-1 has no status it can prove") }, "the forged canary refused")
	if st.Phase != agent.PhaseWaitingForRing || !strings.Contains(st.Message, "is not signed") {
		t.Errorf("eu-2 on a forged canary: %s %s %q", st.Phase, st.Reason, st.Message)
	}
	if out, _ := f.status(); !strings.Contains(out, "Unverified") {
		t.Errorf("fleet status on a forged canary:\n%s", out)
	}
	// An oversized one is named, and the pass goes on (the status says so).
	f.e.pushToBranch("status/lab-1", agent.PeerStatusPath("lab-1"), append(data, []byte("# "+strings.Repeat("x", agent.MaxStatusSize)+"\n")...))
	st = f.wait("eu-2", func(s agent.Status) bool { return strings.Contains(s.Message, "TooLarge") }, "the oversized canary named")
	if !strings.Contains(st.Message, "status/lab-1.yaml on status/lab-1 is ") || !strings.Contains(st.Message, "over the 262144-byte limit") {
		t.Errorf("eu-2 on an oversized canary: %q", st.Message)
	}
	f.e.polls(2)
	for _, c := range f.order[1:] {
		if firstTouch(f.sims[c], "v1.8.4") != nil {
			t.Errorf("%s moved on a forged canary status: %+v", c, f.sims[c].Transitions())
		}
	}
}

// pushToBranch commits data at path on top of branch as somebody without
// any key would, and pushes it.
func (e *e2e) pushToBranch(branch, path string, data []byte) {
	e.t.Helper()
	git := func(args ...string) {
		e.t.Helper()
		if out, err := e.st.Human.Git(args...); err != nil {
			e.t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	git("fetch", "-q", "origin", "+refs/heads/"+branch+":refs/remotes/origin/"+branch)
	git("checkout", "-q", "-B", "mallory", "origin/"+branch)
	if err := os.WriteFile(filepath.Join(e.st.Human.Dir(), path), data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	git("add", path)
	git("-c", "user.name=mallory", "-c", "user.email=m@example.com", "-c", "commit.gpgsign=false", "commit", "-q", "-m", "status(lab-1): Succeeded")
	git("push", "-q", "origin", "HEAD:"+branch)
	git("checkout", "-q", e.st.Git.Branch)
}

// assertRingOrder checks each ring started towards version only after the
// ring before it completed that version and soaked.
func assertRingOrder(t *testing.T, sims map[string]*simulator.Simulator, order []string, version string) {
	t.Helper()
	for i := 1; i < len(order); i++ {
		done := completed(sims[order[i-1]], version)
		start := firstTouch(sims[order[i]], version)
		if done == nil || start == nil {
			t.Fatalf("%s or %s never reached %s", order[i-1], order[i], version)
		}
		// Ready's transition time is kept to the second.
		if gap := start.At.Sub(done.At); gap < fleetSoak-time.Second {
			t.Errorf("%s started %s only %s after %s completed it (soak %s)", order[i], version, gap, order[i-1], fleetSoak)
		}
	}
}

func completed(s *simulator.Simulator, version string) *simulator.Transition {
	for _, tr := range s.Transitions() {
		if tr.Kind == simulator.HopCompleted && tr.To == version {
			return &tr
		}
	}
	return nil
}

// firstTouch is the first thing the simulator did towards version.
func firstTouch(s *simulator.Simulator, version string) *simulator.Transition {
	for _, tr := range s.Transitions() {
		if tr.To == version {
			return &tr
		}
	}
	return nil
}
