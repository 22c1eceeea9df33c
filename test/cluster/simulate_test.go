//go:build realnode

package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/stack"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// nodeRecording is what a run of the node's scenario saw of the KubeVirt
// CR, step by step (simulator.Record's states).
type nodeRecording struct{ install, hop, removal []string }

// simulateNode starts the node's scenario, without its broken releases, on
// the simulator: the same kvgitops binary, desired files and releases,
// against a control plane of its own (the test's cluster is busy with the
// real one). The returned function waits for its recording; however the
// test ends, the run is stopped and its control plane with it before the
// test's cleanup is done (a test binary that exits under a running
// simulated run leaves its etcd behind).
func simulateNode(t *testing.T, ctx context.Context, manifests map[string][]byte, binary string) func() (nodeRecording, error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	var out nodeRecording
	var err error
	go func() {
		defer close(done)
		rel := releases.NewServer(nodeTags)
		defer rel.Close()
		for tag, m := range manifests {
			rel.Mutate(tag+"/kubevirt-operator.yaml", func([]byte) []byte { return m })
		}
		out, err = runSimulated(ctx, rel, binary)
	}()
	return func() (nodeRecording, error) { <-done; return out, err }
}

func runSimulated(ctx context.Context, rel *releases.Server, binary string) (out nodeRecording, err error) {
	env, err := testenv.Start()
	if err != nil {
		return out, err
	}
	defer func() { _ = env.Stop() }()
	st, err := stack.Start(ctx, env.Config, stack.Options{Releases: rel, Binary: binary,
		Simulator: simulator.Options{Catalog: nodeTags}})
	if err != nil {
		return out, err
	}
	defer st.Close()
	a, err := st.StartAgent(stack.AgentOptions{ClusterName: "sim"})
	if err != nil {
		return out, err
	}
	defer a.Stop()
	dyn := dynamic.NewForConfigOrDie(env.Config)
	step := func(from, to, desired string, done func(agent.Status) bool) ([]string, error) {
		rec := simulator.Record(dyn, from, to)
		defer rec.Finish()
		if _, err := st.Human.CommitFile("kubevirt.yaml", []byte(desired), "step"); err != nil {
			return nil, err
		}
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		if s, err := st.WaitStatus(wctx, "sim", done); err != nil {
			return nil, fmt.Errorf("the simulated scenario, to %q: %w (status %s %s: %s)", to, err, s.Phase, s.Reason, s.Message)
		}
		return rec.Finish(), nil
	}
	if out.install, err = step("", nodeTags[0], desiredKubeVirt(nodeTags[0]), stack.Phase(agent.PhaseSucceeded, nodeTags[0])); err != nil {
		return out, err
	}
	if out.hop, err = step(nodeTags[0], nodeTags[1], desiredKubeVirt(nodeTags[1]), stack.Phase(agent.PhaseSucceeded, nodeTags[1])); err != nil {
		return out, err
	}
	out.removal, err = step(nodeTags[1], nodeTags[1], absent, func(s agent.Status) bool {
		return s.Phase == agent.PhaseSucceeded && s.Desired != nil && s.Desired.State == "Absent"
	})
	return out, err
}

// compareWithSimulator compares the real node's recording with the
// simulator's, step by step (simulator.Compare).
func compareWithSimulator(t *testing.T, real, sim nodeRecording) {
	t.Helper()
	simulator.Compare(t, simulator.StepInstall, real.install, sim.install)
	simulator.Compare(t, simulator.StepOperatorHop, real.hop, sim.hop)
	simulator.Compare(t, simulator.StepRemoval, real.removal, sim.removal)
}

// kvgitopsBinary is the binary the node's image holds.
func kvgitopsBinary() string { return filepath.Join(shared.dir, "kvgitops") }
