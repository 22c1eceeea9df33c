package faults

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/stack"
	"github.com/kvgitops/kvgitops/test/testenv"
)

var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "kvgitops-faults-")
	if err != nil {
		panic(err)
	}
	if !testing.Short() {
		if binary, err = stack.Build(context.Background(), dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := testenv.MainWith(m, map[string]string{"etcd-compaction-interval": "2s"})
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// world is a stack whose agent acts as the deploy/ ServiceAccount.
type world struct {
	t  *testing.T
	st *stack.Stack
}

func setup(t *testing.T, o stack.Options) *world {
	t.Helper()
	env := testenv.Get(t)
	for _, f := range []string{"namespace.yaml", "serviceaccount.yaml", "rbac-agent.yaml", "rbac-installer.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "deploy", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.Apply(t.Context(), env.Config, data); err != nil {
			t.Fatalf("apply deploy/%s: %v", f, err)
		}
	}
	o.Binary = binary
	o.AgentConfig = env.Impersonate("kvgitops", "kvgitops")
	st, err := stack.Start(t.Context(), env.Config, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	t.Cleanup(func() {
		if v := st.Sim.Violations(); len(v) > 0 {
			t.Errorf("the simulator recorded violations: %+v", v)
		}
	})
	return &world{t: t, st: st}
}

func (w *world) agent() *stack.Agent {
	w.t.Helper()
	return w.st.StartAgentFor(w.t, stack.AgentOptions{ClusterName: "faults", Interval: "1s"})
}

func (w *world) commit(spec string) {
	w.t.Helper()
	if _, err := w.st.Human.CommitFile("kubevirt.yaml", stack.DesiredFile(spec), "change"); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) succeeded(version string, limit time.Duration) agent.Status {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.t.Context(), limit)
	defer cancel()
	st, err := w.st.WaitStatus(ctx, "faults", stack.Phase(agent.PhaseSucceeded, version))
	if err != nil {
		w.t.Fatalf("waiting for %s: %v; status %s %s: %s", version, err, st.Phase, st.Reason, st.Message)
	}
	return st
}
