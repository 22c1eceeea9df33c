package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/stack"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// benchWorkloads measures what running VMIs cost the agent: per count, an
// idle pass (nothing to do: the VMIs are only counted) and a planning pass
// (a hop awaiting approval: every VMI read, paged, and forecast), as the
// API requests each pass makes, the agent's RSS, and the status file's size.
func benchWorkloads(counts []int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	// The simulated virt-controller looks at thousands of VMIs every 2s, not
	// every 50ms: the figures are the agent's.
	st, err := stack.Start(ctx, env.Config, stack.Options{RolloutDelay: time.Second, Simulator: simulator.Options{ControllerInterval: 2 * time.Second}})
	if err != nil {
		return err
	}
	defer st.Close()
	desire := func(spec, msg string) error {
		_, err := st.Human.CommitFile("kubevirt.yaml", stack.DesiredFile(spec), msg)
		return err
	}
	if err := desire("  version: v1.7.4\n", "install"); err != nil {
		return err
	}
	a, err := st.StartAgent(stack.AgentOptions{ClusterName: "bench", Interval: "2s"})
	if err != nil {
		return err
	}
	defer a.Stop()
	if _, err := st.WaitStatus(ctx, "bench", stack.Phase(agent.PhaseSucceeded, "v1.7.4")); err != nil {
		return err
	}
	metrics, err := metricsURL(ctx, a)
	if err != nil {
		return err
	}
	fmt.Printf("\n## workloads (the agent against thousands of running VMIs)\n\n")
	fmt.Println("| VMIs | idle pass: API requests | idle RSS | planning pass: API requests | planning RSS (max) | status file |")
	fmt.Println("|---|---|---|---|---|---|")
	have := 0
	for _, n := range counts {
		if err := st.Sim.CreateVMIs(ctx, "default", fmt.Sprintf("vm%d", n), n-have); err != nil {
			return err
		}
		have = n
		idleReq, idleRSS, err := perPass(ctx, metrics, a.Pid(), 5)
		if err != nil {
			return err
		}
		if err := desire("  version: v1.8.4\n  approval: Manual\n", "plan, await approval"); err != nil {
			return err
		}
		s, err := st.WaitStatus(ctx, "bench", func(s agent.Status) bool {
			return s.Phase == agent.PhaseAwaitingApproval && s.Forecast != nil && s.Forecast.Counts["LiveMigrate"] == n
		})
		if err != nil {
			return fmt.Errorf("%d VMIs: the plan awaiting approval: %w (%s %s)", n, err, s.Phase, s.Message)
		}
		planReq, planRSS, err := perPass(ctx, metrics, a.Pid(), 3)
		if err != nil {
			return err
		}
		size := statusSize(st)
		if err := desire("  version: v1.7.4\n", "back to idle"); err != nil {
			return err
		}
		if _, err := st.WaitStatus(ctx, "bench", stack.Phase(agent.PhaseSucceeded, "v1.7.4")); err != nil {
			return err
		}
		fmt.Printf("| %d | %.0f | %.1f MiB | %.0f | %.1f MiB | %.1f KiB |\n", n, idleReq, float64(idleRSS)/1024, planReq, float64(planRSS)/1024, float64(size)/1024)
	}
	return nil
}

// perPass counts the agent's API requests over passes reconcile passes and
// divides, sampling its RSS meanwhile (the max).
func perPass(ctx context.Context, url string, pid, passes int) (float64, int64, error) {
	m0, err := scrape(ctx, url)
	if err != nil {
		return 0, 0, err
	}
	done, peak := make(chan struct{}), make(chan int64)
	go func() { peak <- sampleRSS(pid, done) }()
	var m1 map[string]float64
	for {
		time.Sleep(500 * time.Millisecond)
		if m1, err = scrape(ctx, url); err != nil || m1["passes"]-m0["passes"] >= float64(passes) {
			break
		}
	}
	close(done)
	rss := <-peak
	if err != nil {
		return 0, 0, err
	}
	return (m1["requests"] - m0["requests"]) / (m1["passes"] - m0["passes"]), rss, nil
}

// scrape reads the agent's request and pass counters.
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(name, "kvgitops_kube_requests_total"):
			out["requests"] += v
		case strings.HasPrefix(name, "kvgitops_reconcile_duration_seconds_count"):
			out["passes"] += v
		}
	}
	return out, sc.Err()
}

// metricsURL is where the agent serves /metrics (it logs the address).
func metricsURL(ctx context.Context, a *stack.Agent) (string, error) {
	l, err := a.WaitLine(ctx, func(l stack.Line) bool { return l.Msg() == "Server listening" && l.Str("server") == "metrics" })
	if err != nil {
		return "", err
	}
	return "http://" + l.Str("address") + "/metrics", nil
}

func statusSize(st *stack.Stack) int {
	text, err := st.Git.Show(st.Git.Branch, agent.PeerStatusPath("bench"))
	if err != nil {
		return 0
	}
	return len(text)
}
