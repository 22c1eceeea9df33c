package e2e

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

var (
	binary   string
	auditDir string // the apiserver's audit log of writes
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "kvgitops-e2e-")
	if err != nil {
		panic(err)
	}
	if !testing.Short() {
		if binary, err = stack.Build(context.Background(), dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	auditDir = dir
	audit, err := testenv.Audit(dir)
	if err != nil {
		panic(err)
	}
	code := testenv.MainWith(m, audit)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// e2e is one test's world.
type e2e struct {
	t      *testing.T
	st     *stack.Stack
	agents []*stack.Agent
}

// setup starts a stack whose agents act as the deploy/ ServiceAccount,
// with deploy/'s namespace and RBAC applied.
func setup(t *testing.T, o stack.Options) *e2e {
	t.Helper()
	env := testenv.Get(t)
	ctx := t.Context()
	for _, f := range []string{"namespace.yaml", "serviceaccount.yaml", "rbac-agent.yaml", "rbac-installer.yaml", "admission-policy.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "deploy", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.Apply(ctx, env.Config, data); err != nil {
			t.Fatalf("apply deploy/%s: %v", f, err)
		}
	}
	if o.RolloutDelay == 0 {
		o.RolloutDelay = 200 * time.Millisecond
	}
	o.Binary = binary
	o.AgentConfig = env.Impersonate("kvgitops", "kvgitops")
	st, err := stack.Start(ctx, env.Config, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	t.Cleanup(func() { // the agent never drives KubeVirt outside its rules
		if v := st.Sim.Violations(); len(v) > 0 {
			t.Errorf("the simulator recorded violations: %+v", v)
		}
	})
	return &e2e{t: t, st: st}
}

func (e *e2e) commit(spec, msg string) string {
	e.t.Helper()
	h, err := e.st.Human.CommitFile("kubevirt.yaml", stack.DesiredFile(spec), msg)
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

func (e *e2e) agent(o stack.AgentOptions) *stack.Agent {
	e.t.Helper()
	if o.ClusterName == "" {
		o.ClusterName = "e2e"
	}
	if o.Interval == "" {
		o.Interval = "1s"
	}
	a := e.st.StartAgentFor(e.t, o)
	e.agents = append(e.agents, a)
	return a
}

func (e *e2e) wait(cond func(agent.Status) bool, what string) agent.Status {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 90*time.Second)
	defer cancel()
	go func() { // nobody left to make progress: fail fast
		for ctx.Err() == nil {
			alive := false
			for _, a := range e.agents {
				select {
				case <-a.Done():
				default:
					alive = true
				}
			}
			if !alive {
				cancel()
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	st, err := e.st.WaitStatus(ctx, "e2e", cond)
	if err != nil {
		e.t.Fatalf("waiting for %s: %v; status phase %s reason %s: %s", what, err, st.Phase, st.Reason, st.Message)
	}
	return st
}

func (e *e2e) succeeded(version string) agent.Status {
	e.t.Helper()
	return e.wait(stack.Phase(agent.PhaseSucceeded, version), "Succeeded at "+version)
}
