package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/discovery"
)

// process finds the running control-plane process whose command line
// holds marker (its data or certificate folder): its pid and arguments.
func process(binary, marker string) (int, []string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(raw, []byte(marker)) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if filepath.Base(args[0]) == binary {
			return pid, args, nil
		}
	}
	return 0, nil, fmt.Errorf("no %s process with %s", binary, marker)
}

// RestartAPIServer kills kube-apiserver (SIGKILL: no graceful shutdown, as
// a crash or a node loss), keeps it down for down, and starts it again with
// the same flags, certificates and etcd data; it returns once the apiserver
// answers. Stop stops the new process.
func (e *Env) RestartAPIServer(down time.Duration) error {
	pid, args, err := process("kube-apiserver", e.env.ControlPlane.APIServer.CertDir)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver %d did not die", pid)
		}
	}
	time.Sleep(down)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	e.restarted = append(e.restarted, cmd)
	dc := discovery.NewDiscoveryClientForConfigOrDie(e.Config)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		if _, err := dc.ServerVersion(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver did not come back: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// PauseEtcd stops etcd (SIGSTOP: a disk that does not answer, a process
// stalled) until the returned function resumes it.
func (e *Env) PauseEtcd() (resume func(), err error) {
	pid, _, err := process("etcd", e.env.ControlPlane.Etcd.DataDir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return nil, err
	}
	return func() { _ = syscall.Kill(pid, syscall.SIGCONT) }, nil
}
