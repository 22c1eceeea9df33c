package stack

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// Line is one JSON log line of an agent.
type Line map[string]any

// Msg is the log message.
func (l Line) Msg() string { s, _ := l["msg"].(string); return s }

// Str is a string attribute.
func (l Line) Str(k string) string { s, _ := l[k].(string); return s }

// Agent is a running kvgitops process.
type Agent struct {
	Name  string
	cmd   *exec.Cmd
	done  chan struct{}
	err   error
	mu    sync.Mutex
	lines []Line
	subs  []chan Line
	raw   *os.File
}

// AgentOptions are the flags of one agent process.
type AgentOptions struct {
	Name        string   // default "agent"
	ClusterName string   // default "demo"
	Interval    string   // default "1s"
	Extra       []string // more flags
	Env         []string
	Kubeconfig  string // default the stack's admin kubeconfig
	Impersonate *rest.ImpersonationConfig
	// Wrap runs the binary through a command (e.g. a mount namespace with a
	// read-only root): Wrap[0] is run with Wrap[1:], then the binary and
	// its arguments.
	Wrap []string
}

// Args are the flags a user would give `kvgitops run` against this stack.
func (s *Stack) Args(o AgentOptions) []string {
	if o.ClusterName == "" {
		o.ClusterName = "demo"
	}
	if o.Interval == "" {
		o.Interval = "1s"
	}
	kc := o.Kubeconfig
	if kc == "" {
		kc = s.Kubeconfig
	}
	args := []string{"run",
		"--repo-url", s.Git.URL(),
		"--cluster-name", o.ClusterName,
		"--interval", o.Interval,
		"--git-secret-dir", s.SecretDir,
		"--releases-url", s.Releases.ReleasesURL(),
		"--manifest-base-url", s.Releases.DownloadBaseURL(),
		"--release-ca-file", s.ReleaseCA,
		"--release-allowed-networks", "127.0.0.0/8",
		"--kubeconfig", kc,
		"--metrics-addr", "127.0.0.1:0",
		"--health-addr", "127.0.0.1:0",
		"--log-encoding", "json",
	}
	return append(args, o.Extra...)
}

// StartAgent starts `kvgitops run` with Args(o); its logs are kept and can be
// followed. Stop it with Stop or Kill.
func (s *Stack) StartAgent(o AgentOptions) (*Agent, error) {
	if o.Name == "" {
		o.Name = "agent"
	}
	logFile, err := os.Create(filepath.Join(s.Dir, o.Name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(s.Binary, s.Args(o)...)
	if len(o.Wrap) > 0 {
		cmd = exec.Command(o.Wrap[0], append(append(o.Wrap[1:], s.Binary), s.Args(o)...)...)
	}
	cmd.Env = append(os.Environ(), o.Env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	a := &Agent{Name: o.Name, cmd: cmd, done: make(chan struct{}), raw: logFile}
	go a.read(stderr)
	return a, nil
}

func (a *Agent) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		_, _ = a.raw.Write(append(sc.Bytes(), '\n'))
		var l Line
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			l = Line{"msg": "(raw) " + sc.Text()}
		}
		a.mu.Lock()
		a.lines = append(a.lines, l)
		subs := append([]chan Line(nil), a.subs...)
		a.mu.Unlock()
		for _, c := range subs {
			select {
			case c <- l:
			default:
			}
		}
	}
	a.err = a.cmd.Wait()
	_ = a.raw.Close()
	a.mu.Lock()
	for _, c := range a.subs {
		close(c)
	}
	a.subs = nil
	a.mu.Unlock()
	close(a.done)
}

// Follow returns a channel of the log lines from now on; it closes when the
// process ends.
func (a *Agent) Follow() <-chan Line {
	c := make(chan Line, 1024)
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-a.done:
		close(c)
	default:
		a.subs = append(a.subs, c)
	}
	return c
}

// Lines returns every log line so far.
func (a *Agent) Lines() []Line {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Line(nil), a.lines...)
}

// Pid is the process id.
func (a *Agent) Pid() int { return a.cmd.Process.Pid }

// Done is closed when the process has exited.
func (a *Agent) Done() <-chan struct{} { return a.done }

// ExitCode is the exit status once Done.
func (a *Agent) ExitCode() int {
	if a.cmd.ProcessState == nil {
		return -1
	}
	return a.cmd.ProcessState.ExitCode()
}

// Stop sends SIGTERM and waits (up to 20s, then SIGKILL).
func (a *Agent) Stop() {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		a.Kill()
	}
}

// Kill sends SIGKILL and waits.
func (a *Agent) Kill() {
	_ = a.cmd.Process.Kill()
	<-a.done
}

// Signal sends sig (SIGSTOP/SIGCONT in split-brain tests).
func (a *Agent) Signal(sig syscall.Signal) error { return a.cmd.Process.Signal(sig) }

// WaitLine waits until a log line satisfies match.
func (a *Agent) WaitLine(ctx context.Context, match func(Line) bool) (Line, error) {
	c := a.Follow()
	for _, l := range a.Lines() {
		if match(l) {
			return l, nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w", a.Name, ctx.Err())
		case l, ok := <-c:
			if !ok {
				return nil, fmt.Errorf("%s exited (code %d) before the line appeared", a.Name, a.ExitCode())
			}
			if match(l) {
				return l, nil
			}
		}
	}
}

// StartAgentFor starts an agent for t: it fails t if the agent cannot
// start, stops it when t ends, and logs every line it wrote when t failed.
func (s *Stack) StartAgentFor(t testing.TB, o AgentOptions) *Agent {
	t.Helper()
	a, err := s.StartAgent(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			for _, l := range a.Lines() {
				t.Logf("%s: %v", a.Name, l)
			}
		}
	})
	return a
}
