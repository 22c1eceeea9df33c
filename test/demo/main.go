// Command demo is `make demo`: the whole kvgitops story on one machine, on
// an embedded default. A real kube-apiserver and etcd, the virt-operator
// simulator, a release server and a git server on loopback; the real
// kvgitops binary reconciles a Git repository in which it first installs
// KubeVirt v0.58.2, then walks the supported hops to "~1.1", then tears
// KubeVirt down. It prints live progress, the committed status file and its
// git log, and exits 0 only if the whole story completed.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/stack"
	"github.com/kvgitops/kvgitops/test/testenv"
)

const cluster = "demo"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "\nDEMO FAILED:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	begin := time.Now()
	say := func(format string, args ...any) {
		fmt.Printf("[%6.1fs] %s\n", time.Since(begin).Seconds(), fmt.Sprintf(format, args...))
	}
	say("starting kube-apiserver v%s and etcd (built from the Go module proxy by `make testbin`)", testenv.KubeVersion)
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	say("starting the virt-operator simulator, the release server and a git server; building kvgitops")
	st, err := stack.Start(ctx, env.Config, stack.Options{RolloutDelay: 700 * time.Millisecond})
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()

	commit := func(spec, msg string) error {
		say("git commit -m %q   # kubevirt.yaml: %s", msg, strings.TrimSpace(spec))
		_, err := st.Human.CommitFile("kubevirt.yaml", stack.DesiredFile(spec), msg)
		return err
	}
	if err := commit("  version: \"v0.58.2\"\n", "Install KubeVirt v0.58.2"); err != nil {
		return err
	}
	a, err := st.StartAgent(stack.AgentOptions{ClusterName: cluster, Interval: "2s"})
	if err != nil {
		return err
	}
	defer a.Stop()
	say("kvgitops run --repo-url %s --cluster-name %s  (pid %d)", st.Git.URL(), cluster, a.Pid())
	progressDone := make(chan struct{})
	go func() { defer close(progressDone); progress(a.Follow(), say) }()

	acts := []struct {
		name string
		spec string
		msg  string
		want func(agent.Status) bool
	}{
		{"install v0.58.2", "", "", stack.Phase(agent.PhaseSucceeded, "v0.58.2")},
		{"upgrade to ~1.1, one supported hop at a time", "  version: \"~1.1\"\n", "Upgrade KubeVirt to ~1.1", stack.Phase(agent.PhaseSucceeded, "v1.1.1")},
		{"teardown", "  state: Absent\n", "Remove KubeVirt", func(s agent.Status) bool {
			return s.Phase == agent.PhaseSucceeded && s.Desired != nil && s.Desired.State == "Absent"
		}},
	}
	for i, act := range acts {
		fmt.Printf("\n=== Act %d: %s ===\n", i+1, act.name)
		if act.spec != "" {
			if err := commit(act.spec, act.msg); err != nil {
				return err
			}
		}
		s, err := st.WaitStatus(ctx, cluster, act.want)
		if err != nil {
			return fmt.Errorf("act %d (%s): %w; last status phase %s: %s", i+1, act.name, err, s.Phase, s.Message)
		}
		say("status committed to Git: phase %s, observed %q: %s", s.Phase, s.Observed.Version, s.Message)
	}
	a.Stop()
	<-progressDone

	if err := verify(st); err != nil {
		return err
	}
	text, _ := st.Git.Show(st.Git.Branch, "status/"+cluster+".yaml")
	fmt.Printf("\n=== The committed status file (status/%s.yaml) ===\n%s\n", cluster, text)
	log, _ := st.Git.Log("")
	fmt.Printf("\n=== git log --oneline (newest first) ===\n")
	for _, l := range log {
		fmt.Println(oneline(l))
	}
	fmt.Printf("\nDemo completed in %.1fs: installed v0.58.2, upgraded v0.58.2 -> v0.59.2 -> v1.0.1 -> v1.1.1, tore KubeVirt down.\n", time.Since(begin).Seconds())
	return nil
}

// verify checks the story against what the simulated operator saw.
func verify(st *stack.Stack) error {
	want := []simulator.Hop{{To: "v0.58.2"}, {From: "v0.58.2", To: "v0.59.2"}, {From: "v0.59.2", To: "v1.0.1"}, {From: "v1.0.1", To: "v1.1.1"}}
	if got := st.Sim.CompletedHops(); !slices.Equal(got, want) {
		return fmt.Errorf("the simulator completed hops %v, want %v", got, want)
	}
	if n := st.Sim.Count(simulator.HopRefused); n > 0 {
		return fmt.Errorf("the simulator refused %d hops", n)
	}
	if st.Sim.Count(simulator.FinalizerRemoved) != 1 {
		return errors.New("KubeVirt was not deleted")
	}
	return nil
}

// progress prints the agent's log as a live view.
func progress(lines <-chan stack.Line, say func(string, ...any)) {
	last := ""
	for l := range lines {
		var out string
		switch l.Msg() {
		case "Step started":
			out = fmt.Sprintf("  > step %v/%v %s %s -> %s (%s)", l["step"], l["steps"], l.Str("type"), dash(l.Str("from")), dash(l.Str("to")), dash(l.Str("method")))
		case "Step progress":
			out = "      " + l.Str("message")
		case "Step succeeded":
			out = fmt.Sprintf("  ok step %v/%v in %s", l["step"], l["steps"], l.Str("duration"))
		case "Status committed":
			out = fmt.Sprintf("  git: status committed (phase %s, %s)", l.Str("phase"), l.Str("reason"))
		case "Reconcile failed":
			out = "  ! " + fmt.Sprint(l["error"])
		case "Agent stopped":
			out = "  agent stopped: " + fmt.Sprint(l["error"])
		}
		if out != "" && out != last {
			say("%s", out)
			last = out
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneline(l string) string {
	if len(l) > 48 {
		return l[:7] + l[40:]
	}
	return l
}
