package lane

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/root"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/stack"
	"github.com/kvgitops/kvgitops/test/standin"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// world is one lane test's cluster: the real operator behind the stand-ins,
// a release server with the built releases, a git server, agents.
type world struct {
	t      *testing.T
	st     *stack.Stack
	si     *standin.Standin
	rel    *releases.Server
	agents []*stack.Agent
	dyn    dynamic.Interface
}

// setup starts a world with the real operator behind the stand-ins, or,
// simulated, with the simulator in its place (the same releases, deploy/
// objects and agent). KubeVirt's common instancetypes are off (about 15 s
// more per step) until a test enables them.
func setup(t *testing.T, simulated bool) *world {
	t.Helper()
	need(t)
	ctx := t.Context()
	env := lane.env
	root, _ := root.Module()
	for _, f := range []string{"namespace.yaml", "serviceaccount.yaml", "rbac-agent.yaml", "rbac-installer.yaml", "admission-policy.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, "deploy", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.Apply(ctx, env.Config, data); err != nil {
			t.Fatalf("apply deploy/%s: %v", f, err)
		}
	}
	rel := releases.NewServer(lane.tags)
	t.Cleanup(rel.Close)
	for _, tag := range lane.tags {
		rendered := lane.rendered[tag]
		rel.Mutate(tag+"/kubevirt-operator.yaml", func([]byte) []byte { return rendered })
		rel.Mutate(tag+"/kubevirt-cr.yaml", func(b []byte) []byte {
			return []byte(strings.Replace(string(b), "  configuration:\n", "  configuration:\n    commonInstancetypesDeployment:\n      enabled: false\n", 1))
		})
	}
	opts := stack.Options{NoSimulator: !simulated, Releases: rel, Binary: lane.binary,
		AgentConfig: env.Impersonate("kvgitops", "kvgitops"), Simulator: simulator.Options{Catalog: lane.tags}}
	var si *standin.Standin
	dir := t.TempDir()
	if !simulated {
		opKubeconfig := filepath.Join(dir, "operator.kubeconfig")
		if err := writeKubeconfig(env.Impersonate("kubevirt", "kubevirt-operator"), opKubeconfig); err != nil {
			t.Fatal(err)
		}
		var err error
		si, err = standin.Start(standin.Options{Admin: env.Config, OperatorKubeconfig: opKubeconfig, Binaries: lane.ops,
			OperatorIP: operatorIP, VirtAPIIP: virtAPIIP, Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(si.Stop)
	}
	if simulated { // after the stack has stopped the simulator
		t.Cleanup(func() { _ = simulator.Wipe(context.Background(), env.Config) })
	}
	st, err := stack.Start(ctx, env.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	w := &world{t: t, st: st, si: si, rel: rel, dyn: dynamic.NewForConfigOrDie(env.Config)}
	t.Cleanup(func() {
		if t.Failed() && si != nil {
			logs, _ := filepath.Glob(filepath.Join(dir, "virt-operator-*.log"))
			for _, f := range logs {
				if b, err := os.ReadFile(f); err == nil {
					lines := strings.Split(string(b), "\n")
					t.Logf("%s (last lines):\n%s", f, strings.Join(lines[max(0, len(lines)-40):], "\n"))
				}
			}
			for _, e := range si.Events() {
				t.Logf("stand-in: %s %s %s", e.At.Format("15:04:05.000"), e.Kind, e.Message)
			}
		}
	})
	return w
}

func (w *world) commit(spec, msg string) {
	w.t.Helper()
	if _, err := w.st.Human.CommitFile("kubevirt.yaml", stack.DesiredFile(spec), msg); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) agent() *stack.Agent {
	w.t.Helper()
	a := w.st.StartAgentFor(w.t, stack.AgentOptions{ClusterName: "lane", Interval: "1s"})
	w.agents = append(w.agents, a)
	return a
}

func (w *world) wait(what string, limit time.Duration, cond func(agent.Status) bool) agent.Status {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.t.Context(), limit)
	defer cancel()
	st, err := w.st.WaitStatus(ctx, "lane", cond)
	if err != nil {
		w.t.Fatalf("waiting for %s: %v; status %s %s: %s", what, err, st.Phase, st.Reason, st.Message)
	}
	return st
}

func (w *world) succeeded(version string) agent.Status {
	w.t.Helper()
	return w.wait("Succeeded at "+version, 5*time.Minute, stack.Phase(agent.PhaseSucceeded, version))
}

func writeKubeconfig(c *rest.Config, path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lane"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	cfg.AuthInfos["lane"] = &clientcmdapi.AuthInfo{ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken,
		Impersonate: c.Impersonate.UserName, ImpersonateGroups: c.Impersonate.Groups}
	cfg.Contexts["lane"] = &clientcmdapi.Context{Cluster: "lane", AuthInfo: "lane"}
	cfg.CurrentContext = "lane"
	return clientcmd.WriteToFile(*cfg, path)
}
