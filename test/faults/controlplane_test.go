package faults

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/stack"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// TestTheAPIServerDiesMidHop (RELIABILITY F6, F23): kube-apiserver is
// killed while the agent waits for a hop and comes back 15 s later, after
// etcd compacted the revisions its watches had reached (410 Gone on
// resume). The agent re-lists, the hop completes, and the journal in the
// status file holds the attempt with its outcome: nothing lost.
func TestTheAPIServerDiesMidHop(t *testing.T) {
	w := setup(t, stack.Options{RolloutDelay: 4 * time.Second})
	w.commit("  version: v1.7.4\n")
	a := w.agent()
	w.succeeded("v1.7.4", 2*time.Minute)
	w.commit("  version: v1.8.4\n")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := a.WaitLine(ctx, func(l stack.Line) bool {
		return l.Msg() == "Step progress" && l.Str("message") == "waiting for the virt-operator v1.8.4 rollout"
	}); err != nil {
		t.Fatal(err)
	}
	if err := testenv.Get(t).RestartAPIServer(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	st := w.succeeded("v1.8.4", 3*time.Minute)
	if got, want := w.st.Sim.CompletedHops(), []simulator.Hop{{To: "v1.7.4"}, {From: "v1.7.4", To: "v1.8.4"}}; !slices.Equal(got, want) {
		t.Errorf("hops %v, want %v", got, want)
	}
	var states []agent.StepState
	for _, e := range st.Journal {
		if e.To == "v1.8.4" {
			states = append(states, e.State)
		}
	}
	if !slices.Contains(states, agent.StepSucceeded) {
		t.Errorf("the hop's attempts in the journal: %v", states)
	}
}

// TestEtcdStallsMidHop (F7): etcd stops answering for 10 s while the agent
// waits for a hop: requests time out, the agent backs off and retries,
// and the hop completes once etcd is back; nothing is applied twice.
func TestEtcdStallsMidHop(t *testing.T) {
	w := setup(t, stack.Options{RolloutDelay: 2 * time.Second})
	w.commit("  version: v1.7.4\n")
	a := w.agent()
	w.succeeded("v1.7.4", 2*time.Minute)
	w.commit("  version: v1.8.4\n")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := a.WaitLine(ctx, func(l stack.Line) bool { return l.Msg() == "Step started" && l.Str("to") == "v1.8.4" }); err != nil {
		t.Fatal(err)
	}
	resume, err := testenv.Get(t).PauseEtcd()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	resume()
	w.succeeded("v1.8.4", 3*time.Minute)
	if got, want := w.st.Sim.CompletedHops(), []simulator.Hop{{To: "v1.7.4"}, {From: "v1.7.4", To: "v1.8.4"}}; !slices.Equal(got, want) {
		t.Errorf("hops %v, want %v", got, want)
	}
}
