package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/test/stack"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// agentFigures are what benchAgent measures.
type agentFigures struct {
	idle, hopRSS, junkRSS    int64 // KiB
	hookLatency, pollLatency []time.Duration
}

// agentBench is the stack the agent benchmark drives.
type agentBench struct {
	ctx  context.Context
	st   *stack.Stack
	fig  agentFigures
	hook string // the webhook URL
}

// benchAgent runs the real binary against the stack and reports its memory
// and how fast it reacts to a commit.
func benchAgent() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	st, err := stack.Start(ctx, env.Config, stack.Options{RolloutDelay: time.Second})
	if err != nil {
		return err
	}
	defer st.Close()
	b := &agentBench{ctx: ctx, st: st}
	if err := b.webhook(); err != nil {
		return err
	}
	if err := b.polling(); err != nil {
		return err
	}
	b.print()
	return nil
}

func (b *agentBench) commit(v string) error {
	_, err := b.st.Human.CommitFile("kubevirt.yaml", stack.DesiredFile("  version: "+v+"\n"), "set "+v)
	return err
}

func (b *agentBench) succeeded(v string) error {
	_, err := b.st.WaitStatus(b.ctx, "bench", stack.Phase(agent.PhaseSucceeded, v))
	return err
}

// stepStarted waits for the agent to start the step to v.
func (b *agentBench) stepStarted(a *stack.Agent, v string) error {
	_, err := a.WaitLine(b.ctx, func(l stack.Line) bool { return l.Msg() == "Step started" && l.Str("to") == v })
	return err
}

// webhook installs with an agent told of commits by its webhook (a long
// interval: reactions come from the webhook), measures its idle RSS, then
// its reaction and RSS over three hops.
func (b *agentBench) webhook() error {
	secret := filepath.Join(b.st.Dir, "webhook-secret")
	if err := os.WriteFile(secret, []byte("bench-hmac-secret"), 0o600); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	b.hook = fmt.Sprintf("http://127.0.0.1:%d/hook", port)
	if err := b.commit("v1.4.1"); err != nil {
		return err
	}
	a, err := b.st.StartAgent(stack.AgentOptions{ClusterName: "bench", Interval: "10m",
		Extra: []string{"--webhook-addr", fmt.Sprintf("127.0.0.1:%d", port), "--webhook-secret-file", secret}})
	if err != nil {
		return err
	}
	defer a.Stop()
	if err := b.succeeded("v1.4.1"); err != nil {
		return err
	}
	// Idle: a minute and more after the install, once the agent has handed
	// back what the install left on its heap.
	time.Sleep(65 * time.Second)
	b.fig.idle = maxRSS(a.Pid(), 5*time.Second)
	for _, v := range []string{"v1.5.3", "v1.6.6", "v1.7.4"} {
		if err := b.hookedHop(a, v); err != nil {
			return err
		}
	}
	return nil
}

// hookedHop commits v, posts the webhook and measures the hop.
func (b *agentBench) hookedHop(a *stack.Agent, v string) error {
	if err := b.commit(v); err != nil {
		return err
	}
	t0 := time.Now()
	if err := postHook(b.hook, "bench-hmac-secret"); err != nil {
		return err
	}
	done, peak := make(chan struct{}), make(chan int64)
	go func() { peak <- sampleRSS(a.Pid(), done) }()
	defer func() {
		close(done)
		b.fig.hopRSS = max(b.fig.hopRSS, <-peak)
	}()
	if err := b.stepStarted(a, v); err != nil {
		return err
	}
	b.fig.hookLatency = append(b.fig.hookLatency, time.Since(t0))
	return b.succeeded(v)
}

// polling measures an agent that polls every 10 s (the default interval
// scaled down): its reaction over two hops, then its RSS reading a revision
// with a big file beside the desired one.
func (b *agentBench) polling() error {
	p, err := b.st.StartAgent(stack.AgentOptions{Name: "poller", ClusterName: "bench", Interval: "10s"})
	if err != nil {
		return err
	}
	defer p.Stop()
	if err := b.succeeded("v1.7.4"); err != nil {
		return err
	}
	for _, v := range []string{"v1.8.4", "v1.9.0"} {
		if err := b.commit(v); err != nil {
			return err
		}
		t0 := time.Now()
		if err := b.stepStarted(p, v); err != nil {
			return err
		}
		b.fig.pollLatency = append(b.fig.pollLatency, time.Since(t0))
		if err := b.succeeded(v); err != nil {
			return err
		}
	}
	return b.junk(p)
}

// junk: a Git writer commits 192 MiB of zeros beside the desired file (it
// compresses to almost nothing on the wire), then changes the desired file:
// the agent reads the new revision; its RSS must stay flat.
func (b *agentBench) junk(p *stack.Agent) error {
	if _, err := b.st.Human.CommitFile("junk.bin", make([]byte, 192<<20), "192 MiB of zeros"); err != nil {
		return err
	}
	done, peak := make(chan struct{}), make(chan int64)
	go func() { peak <- sampleRSS(p.Pid(), done) }()
	defer func() {
		close(done)
		b.fig.junkRSS = <-peak
	}()
	if _, err := b.st.Human.CommitFile("kubevirt.yaml", stack.DesiredFile("  version: v1.9.0\n  approval: Manual\n"), "read me beside the junk"); err != nil {
		return err
	}
	_, err := b.st.WaitStatus(b.ctx, "bench", func(s agent.Status) bool { return s.Desired != nil && s.Desired.Approval == "Manual" })
	return err
}

func (b *agentBench) print() {
	f := b.fig
	fmt.Printf("\n## agent (the kvgitops binary, as the deploy/ Deployment runs it)\n\n")
	fmt.Println("| figure | value | goal |")
	fmt.Println("|---|---|---|")
	fmt.Printf("| idle RSS (max over 5 s, a minute after an install) | %.1f MiB | <= 30 MiB |\n", float64(f.idle)/1024)
	fmt.Printf("| RSS during hops (max, 3 hops) | %.1f MiB | |\n", float64(f.hopRSS)/1024)
	fmt.Printf("| commit -> first action, webhook (3 hops) | %s | <= 1 s |\n", durations(f.hookLatency))
	fmt.Printf("| commit -> first action, polling every 10 s (2 hops) | %s | one interval |\n", durations(f.pollLatency))
	fmt.Printf("| RSS reading a revision with a 192 MiB junk file beside the desired file (max) | %.1f MiB | flat (idle) |\n", float64(f.junkRSS)/1024)
}

// sampleRSS samples VmRSS every 20 ms until done closes, returning the max.
func sampleRSS(pid int, done <-chan struct{}) int64 {
	var peak int64
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if r := rssKB(pid); r > peak {
			peak = r
		}
		select {
		case <-done:
			return peak
		case <-t.C:
		}
	}
}

func maxRSS(pid int, d time.Duration) int64 {
	var peak int64
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if r := rssKB(pid); r > peak {
			peak = r
		}
		time.Sleep(100 * time.Millisecond)
	}
	return peak
}

func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

func postHook(url, secret string) error {
	body := []byte(`{"ref":"refs/heads/main"}`)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}

func durations(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, d.Round(time.Millisecond).String())
	}
	return strings.Join(parts, ", ")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
