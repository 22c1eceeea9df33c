package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/stack"
)

// controlledFleet is a fleet file with every ring control: the canary
// ring may lose one cluster (maxFailures 1); prod moves one cluster at a
// time (maxParallel 1) once promoted by hand (promotion Manual). spec
// holds more lines of the spec (paused, promotions).
func controlledFleet(version, spec string, keys map[string]string) []byte {
	return []byte("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtFleet\nspec:\n" +
		"  kubevirt: {version: " + version + ", hopTimeout: 12s}\n" + spec +
		"  rings:\n" +
		"  - {name: canary, clusters: [lab-1], maxFailures: 1}\n" +
		"  - {name: prod, clusters: [p1, p2], maxParallel: 1, promotion: Manual}\n" +
		"  statusKeys:\n" +
		"    lab-1: " + keys["lab-1"] + "\n" +
		"    p1: " + keys["p1"] + "\n" +
		"    p2: " + keys["p2"] + "\n")
}

// TestFleetRingControls drives three clusters through each ring control
// with Git as the only thing they share: a paused rollout moves nobody,
// not even the canary; resumed, the canary goes and the manual ring waits
// for its promotion; promoted, prod moves one cluster at a time; a failed
// canary within its ring's failure budget halts nobody.
func TestFleetRingControls(t *testing.T) {
	f := newFleet(setup(t, stack.Options{}), "lab-1", "p1", "p2")
	f.commit(controlledFleet("v1.6.6", "  paused: true\n", f.keys), "fleet: v1.6.6, paused")
	for _, c := range f.order {
		f.start(c)
	}
	for _, c := range f.order {
		st := f.wait(c, func(s agent.Status) bool { return s.Reason == "RolloutPaused" }, "the pause")
		if st.Phase != agent.PhaseWaitingForRing || !strings.Contains(st.Message, "spec.paused: true in the fleet file") {
			t.Errorf("%s paused: %s %s %q", c, st.Phase, st.Reason, st.Message)
		}
	}
	f.e.polls(2)
	f.untouched("v1.6.6", f.order...)

	// Resumed: the canary installs; the manual ring says how to promote it.
	f.commit(controlledFleet("v1.6.6", "", f.keys), "fleet: resume")
	f.wait("lab-1", stack.Phase(agent.PhaseSucceeded, "v1.6.6"), "the canary")
	for _, c := range []string{"p1", "p2"} {
		st := f.wait(c, func(s agent.Status) bool { return s.Reason == "WaitingForPromotion" }, "the promotion")
		if !strings.Contains(st.Message, "set spec.promotions.prod: v1.6.6 in the fleet file") {
			t.Errorf("%s before its promotion: %q", c, st.Message)
		}
	}
	f.e.polls(2)
	f.untouched("v1.6.6", "p1", "p2")

	// Promoted: p1 first, p2 once p1 is done.
	f.commit(controlledFleet("v1.6.6", "  promotions: {prod: v1.6.6}\n", f.keys), "fleet: promote prod to v1.6.6")
	f.wait("p1", stack.Phase(agent.PhaseSucceeded, "v1.6.6"), "p1")
	f.wait("p2", stack.Phase(agent.PhaseSucceeded, "v1.6.6"), "p2")
	done, start := completed(f.sims["p1"], "v1.6.6"), firstTouch(f.sims["p2"], "v1.6.6")
	if start.At.Before(done.At.Add(-time.Second)) { // Ready's time is kept to the second
		t.Errorf("p2 started at %s, before p1 completed at %s (maxParallel 1)", start.At, done.At)
	}
	log, err := f.e.st.Git.LogOf("status/p2", agent.PeerStatusPath("p2"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "ring prod moves 1 of its clusters at a time (maxParallel 1, promotion Manual): p1 before p2 not done yet"; !strings.Contains(strings.Join(log, "\n"), want) {
		t.Errorf("p2's status history lacks %q:\n%s", want, strings.Join(log, "\n"))
	}

	// The canary fails; its ring may lose one: prod goes on.
	f.sims["lab-1"].StallHop("v1.7.4")
	f.commit(controlledFleet("v1.7.4", "  promotions: {prod: v1.7.4}\n", f.keys), "fleet: v1.7.4")
	f.wait("lab-1", stack.Phase(agent.PhaseFailed, ""), "the canary to fail")
	f.wait("p1", stack.Phase(agent.PhaseSucceeded, "v1.7.4"), "p1 past a failed canary within its budget")
	f.wait("p2", stack.Phase(agent.PhaseSucceeded, "v1.7.4"), "p2")
	// The canary never got there (its hop stays stalled; the agent may try
	// it again): prod went on past a failure, not a success.
	if tr := completed(f.sims["lab-1"], "v1.7.4"); tr != nil {
		t.Errorf("the stalled canary completed v1.7.4: %+v", tr)
	}
	out, _ := f.status()
	for _, want := range []string{"maxFailures 1", "maxParallel 1, promotion Manual (promoted to v1.7.4)"} {
		if !strings.Contains(out, want) {
			t.Errorf("fleet status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "canary   Halted") {
		t.Errorf("fleet status calls a ring within its failure budget halted:\n%s", out)
	}
}

// untouched: the simulators of clusters did nothing towards version.
func (f *fleet) untouched(version string, clusters ...string) {
	f.e.t.Helper()
	for _, c := range clusters {
		if tr := firstTouch(f.sims[c], version); tr != nil {
			f.e.t.Errorf("%s moved towards %s: %+v", c, version, f.sims[c].Transitions())
		}
	}
}
