package standin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// operatorProcess is the one virt-operator process the stand-in runs.
type operatorProcess struct {
	key  string // tag + command line + environment it was started with
	tag  string
	cmd  *exec.Cmd
	done chan struct{}
}

// syncOperator is the kubelet of the virt-operator Deployment: exactly one
// operator process runs, for the Deployment's image tag, with its
// container's command line and environment (the old one is stopped first:
// two would both bind the webhook port, and the real rollout replaces the
// pods). No Deployment, or a paused runner, means no process.
func (s *Standin) syncOperator(ctx context.Context) error {
	dep, err := s.kube.AppsV1().Deployments(s.opts.Namespace).Get(ctx, "virt-operator", metav1.GetOptions{})
	var want *corev1.Container
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return err
	case dep.DeletionTimestamp == nil:
		for i, c := range dep.Spec.Template.Spec.Containers {
			if c.Name == "virt-operator" {
				want = &dep.Spec.Template.Spec.Containers[i]
			}
		}
	}
	s.mu.Lock()
	paused := s.paused
	cur := s.op
	s.mu.Unlock()
	key := ""
	if want != nil && !paused {
		key = want.Image + "\x00" + strings.Join(append(want.Command, want.Args...), " ") + "\x00" + strings.Join(containerEnv(*want), "\x00")
	}
	if cur != nil {
		select {
		case <-cur.done: // exited on its own: start it again, as a kubelet would
			cur = nil
		default:
		}
	}
	if cur != nil && cur.key == key {
		return nil
	}
	if cur != nil {
		s.stopOperator(cur)
	}
	s.mu.Lock()
	s.op = nil
	s.mu.Unlock()
	if key == "" {
		return nil
	}
	p, err := s.startOperator(ctx, *want, key)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.op = p
	s.mu.Unlock()
	return nil
}

func (s *Standin) startOperator(ctx context.Context, c corev1.Container, key string) (*operatorProcess, error) {
	bin, err := s.binary(c.Image)
	if err != nil {
		return nil, err
	}
	args := append(slices.Clone(c.Command[min(1, len(c.Command)):]), c.Args...)
	args = append(args, "--kubeconfig", s.opts.OperatorKubeconfig, "--listen", s.opts.OperatorIP)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(containerEnv(c), "HOME="+s.dir)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.mu.Lock()
	s.starts++
	n := s.starts
	s.mu.Unlock()
	log, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("virt-operator-%d.log", n)))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, err
	}
	p := &operatorProcess{key: key, tag: imageTag(c.Image), cmd: cmd, done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = cmd.Wait()
		_ = log.Close()
		close(p.done)
		s.poke()
	}()
	s.record("OperatorStarted", p.tag)
	return p, nil
}

func (s *Standin) stopOperator(p *operatorProcess) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	s.record("OperatorStopped", p.tag)
}

// PauseOperator stops the operator process and keeps it stopped (its
// fail-closed webhook goes down with it) until ResumeOperator.
func (s *Standin) PauseOperator() {
	s.mu.Lock()
	s.paused = true
	s.mu.Unlock()
	s.poke()
	s.waitFor(func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.op == nil })
}

// ResumeOperator lets the operator run again.
func (s *Standin) ResumeOperator() {
	s.mu.Lock()
	s.paused = false
	s.mu.Unlock()
	s.poke()
}

// OperatorTag is the tag of the running operator process, "" for none.
func (s *Standin) OperatorTag() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.op == nil {
		return ""
	}
	return s.op.tag
}

// binary finds the virt-operator build of an image's tag.
func (s *Standin) binary(image string) (string, error) {
	tag := imageTag(image)
	bin := filepath.Join(s.opts.Binaries, tag, "virt-operator")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("no virt-operator build for %s (image %s): run `make operators`", tag, image)
	}
	return bin, nil
}

func imageTag(image string) string {
	name, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[i+1:]
	}
	return "latest"
}
