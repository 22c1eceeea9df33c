package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/stack"
	"github.com/kvgitops/kvgitops/test/testenv"
)

const fleetSoak = 3 * time.Second

func fleetFile(version, extra string) []byte {
	return []byte("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtFleet\nspec:\n" +
		"  kubevirt: {version: " + version + extra + "}\n" +
		"  rings:\n" +
		"  - {name: canary, clusters: [lab-1], soak: 3s}\n" +
		"  - {name: staging, clusters: [eu-2], soak: 3s}\n" +
		"  - {name: prod, clusters: [ap-1]}\n")
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

	commit(fleetFile("v1.6.6", ""), "fleet: install v1.6.6")
	for _, c := range order {
		e.agent(stack.AgentOptions{Name: c, ClusterName: c, Kubeconfig: kubeconfigs[c], Extra: []string{"--fleet-path", "fleet.yaml"}})
	}
	for _, c := range order {
		wait(c, stack.Phase(agent.PhaseSucceeded, "v1.6.6"), "v1.6.6")
	}
	assertRingOrder(t, sims, order, "v1.6.6")

	// The canary's hop hangs past its timeout: staging and prod halt.
	sims["lab-1"].StallHop("v1.7.4")
	commit(fleetFile("v1.7.4", ", hopTimeout: 12s"), "fleet: v1.7.4")
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
