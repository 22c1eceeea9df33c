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
	e := setup(t, stack.Options{})
	ctx := t.Context()
	sims := map[string]*simulator.Simulator{"lab-1": e.st.Sim}
	kubeconfigs := map[string]string{"lab-1": e.st.Kubeconfig}
	for _, name := range []string{"eu-2", "ap-1"} {
		env, err := testenv.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Stop() })
		c, err := e.st.AddCluster(ctx, name, env.Config, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Sim.Stop) // before its apiserver, which waits for open watches
		sims[name], kubeconfigs[name] = c.Sim, c.Kubeconfig
	}
	commit := func(data []byte, msg string) {
		t.Helper()
		if _, err := e.st.Human.CommitFile("fleet.yaml", data, msg); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(cluster string, cond func(agent.Status) bool, what string) agent.Status {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		st, err := e.st.WaitStatus(wctx, cluster, cond)
		if err != nil {
			t.Fatalf("%s: waiting for %s: %v; phase %s %s: %s", cluster, what, err, st.Phase, st.Reason, st.Message)
		}
		return st
	}
	order := []string{"lab-1", "eu-2", "ap-1"}
	keys, flags := map[string]string{}, map[string][]string{}
	for _, c := range order {
		f, pub := e.statusSigning(c)
		flags[c], keys[c] = append([]string{"--fleet-path", "fleet.yaml"}, f...), pub
	}
	agents := map[string]*stack.Agent{}
	start := func(c string) {
		agents[c] = e.agent(stack.AgentOptions{Name: c, ClusterName: c, Kubeconfig: kubeconfigs[c], Extra: flags[c]})
	}

	commit(fleetFile("v1.6.6", "", keys), "fleet: install v1.6.6")
	for _, c := range order {
		start(c)
	}
	for _, c := range order {
		wait(c, stack.Phase(agent.PhaseSucceeded, "v1.6.6"), "v1.6.6")
	}
	assertRingOrder(t, sims, order, "v1.6.6")

	// The canary's hop hangs past its timeout: staging and prod halt.
	sims["lab-1"].StallHop("v1.7.4")
	commit(fleetFile("v1.7.4", ", hopTimeout: 12s", keys), "fleet: v1.7.4")
	wait("lab-1", stack.Phase(agent.PhaseFailed, ""), "the canary to fail")
	for _, c := range order[1:] {
		st := wait(c, func(s agent.Status) bool { return s.Reason == "RolloutHalted" }, "a halt")
		if st.Phase != agent.PhaseWaitingForRing || !strings.Contains(st.Message, "lab-1 (ring canary) is Failed HopTimeout") {
			t.Errorf("%s: %s %s %q", c, st.Phase, st.Reason, st.Message)
		}
	}
	time.Sleep(2 * time.Second) // polls at 1s: nothing may start while halted
	for _, c := range order[1:] {
		if hops := sims[c].CompletedHops(); len(hops) != 1 || firstTouch(sims[c], "v1.7.4") != nil {
			t.Errorf("%s moved while the rollout was halted: %+v", c, sims[c].Transitions())
		}
	}

	// The fault is fixed: the canary's hop completes, the others follow.
	sims["lab-1"].ClearFaults()
	for _, c := range order {
		wait(c, stack.Phase(agent.PhaseSucceeded, "v1.7.4"), "v1.7.4")
	}
	assertRingOrder(t, sims, order, "v1.7.4")

	// Git holds the story: staging committed that it waited and was halted.
	log, err := e.st.Git.LogOf("status/eu-2", agent.PeerStatusPath("eu-2"))
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(log, "\n")
	for _, want := range []string{"status(eu-2): WaitingForRing WaitingForRing: waiting for ring canary", "status(eu-2): WaitingForRing RolloutHalted: rollout halted: lab-1 (ring canary) is Failed"} {
		if !strings.Contains(joined, want) {
			t.Errorf("the status branch of eu-2 lacks %q:\n%s", want, joined)
		}
	}
	if main, _ := e.st.Git.Log(""); strings.Contains(strings.Join(main, "\n"), "kvgitops: status(") {
		t.Errorf("a fleet agent committed its status to main:\n%s", strings.Join(main, "\n"))
	}

	// `fleet status` reads the same repository and finds the fleet done.
	args := []string{"fleet", "status", "--repo-url", e.st.Git.URL(), "--git-secret-dir", e.st.SecretDir}
	out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "prod     Done   1/1") || !strings.Contains(string(out), "): healthy") {
		t.Errorf("fleet status: %v\n%s", err, out)
	}

	// A canary restarted after finishing remembers it finished (its memory
	// is in its cluster, not on the branch it writes).
	before := wait("lab-1", stack.Phase(agent.PhaseSucceeded, "v1.7.4"), "the canary's status")
	agents["lab-1"].Stop()
	start("lab-1")
	e.polls(4)
	if st := wait("lab-1", func(s agent.Status) bool { return true }, "the canary's status"); st.Phase != agent.PhaseSucceeded || len(st.History) != len(before.History) {
		t.Errorf("the canary after a restart: %s %s, %d runs in its history, want Succeeded and %d", st.Phase, st.Reason, len(st.History), len(before.History))
	}

	// Peers prove who they are. The canary is down; somebody pushes to its
	// branch a status saying it runs the next version, Ready for years.
	agents["lab-1"].Stop()
	next := fleetFile("v1.8.4", "", keys)
	commit(next, "fleet: v1.8.4")
	sum := sha256.Sum256(next)
	forged := agent.Status{Cluster: "lab-1", Phase: agent.PhaseSucceeded, Reason: "UpToDate",
		Desired:    &agent.DesiredSummary{State: "Present", Version: "v1.8.4", Digest: hex.EncodeToString(sum[:])[:16]},
		Observed:   agent.ObservedSummary{Version: "v1.8.4", Available: true},
		Conditions: []agent.Condition{{Type: "Ready", Status: "True", Reason: "UpToDate", LastTransitionTime: agent.NewTimestamp(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))}}}
	data, err := agent.Render(forged)
	if err != nil {
		t.Fatal(err)
	}
	e.pushToBranch("status/lab-1", agent.PeerStatusPath("lab-1"), data)
	st := wait("eu-2", func(s agent.Status) bool { return strings.Contains(s.Message, "lab-1 has no status it can prove") }, "the forged canary refused")
	if st.Phase != agent.PhaseWaitingForRing || !strings.Contains(st.Message, "is not signed") {
		t.Errorf("eu-2 on a forged canary: %s %s %q", st.Phase, st.Reason, st.Message)
	}
	out, _ = exec.CommandContext(ctx, binary, args...).CombinedOutput()
	if !strings.Contains(string(out), "Unverified") {
		t.Errorf("fleet status on a forged canary:\n%s", out)
	}
	// An oversized one is named, and the pass goes on (the status says so).
	e.pushToBranch("status/lab-1", agent.PeerStatusPath("lab-1"), append(data, []byte("# "+strings.Repeat("x", agent.MaxStatusSize)+"\n")...))
	st = wait("eu-2", func(s agent.Status) bool { return strings.Contains(s.Message, "TooLarge") }, "the oversized canary named")
	if !strings.Contains(st.Message, "status/lab-1.yaml on status/lab-1 (") {
		t.Errorf("eu-2 on an oversized canary: %q", st.Message)
	}
	e.polls(2)
	for _, c := range order[1:] {
		if firstTouch(sims[c], "v1.8.4") != nil {
			t.Errorf("%s moved on a forged canary status: %+v", c, sims[c].Transitions())
		}
	}
	// The canary comes back, writes its own signed status over it, and the
	// rollout goes on ring by ring.
	start("lab-1")
	for _, c := range order {
		wait(c, stack.Phase(agent.PhaseSucceeded, "v1.8.4"), "v1.8.4")
	}
	assertRingOrder(t, sims, order, "v1.8.4")
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
