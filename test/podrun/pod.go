package podrun

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kvgitops/kvgitops/test/netns"
)

// podIP is the pod's address in its namespace (status.podIP): its
// loopback, where its ports and the forwarders are.
const podIP = "127.0.0.1"

// Options say what to run.
type Options struct {
	// Name and Namespace are the pod's (HOSTNAME, field references).
	Name, Namespace string
	// Spec is the rendered pod template's spec: exactly one container.
	Spec corev1.PodSpec
	// Image is the container's image as an OCI archive (make image).
	Image string
	// Admin is the kubelet's view of the apiserver: Secrets, ConfigMaps,
	// Services, token requests. The pod reaches the apiserver at its host
	// address.
	Admin *rest.Config
	// Forward are more host addresses (127.0.0.1:port) the pod reaches at
	// the same address: the test's git and release servers.
	Forward []string
	// Dir holds the pod's root filesystem, volumes and log (a test's
	// temporary directory).
	Dir string
}

// Pod is one running container.
type Pod struct {
	o         Options
	dir       string
	kube      kubernetes.Interface
	ns        *netns.NS
	listeners []net.Listener
	cmd       *exec.Cmd
	out       *syncBuffer
	done      chan struct{}
	stopOnce  sync.Once
}

// Start sets the pod up and starts its container. An error wrapping
// ErrNotStarted is what the kubelet would report instead of starting it.
func Start(ctx context.Context, o Options) (*Pod, error) {
	if len(o.Spec.Containers) != 1 || len(o.Spec.InitContainers) != 0 {
		return nil, fmt.Errorf("podrun runs one container, the spec has %d (and %d init containers)", len(o.Spec.Containers), len(o.Spec.InitContainers))
	}
	kube, err := kubernetes.NewForConfig(o.Admin)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	p := &Pod{o: o, dir: filepath.Join(o.Dir, o.Name), kube: kube, out: &syncBuffer{}, done: make(chan struct{})}
	if p.ns, err = netns.Add("kvgpod-" + hex.EncodeToString(id)); err != nil {
		return nil, err
	}
	if err := p.start(ctx); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

func (p *Pod) start(ctx context.Context) error {
	c := p.o.Spec.Containers[0]
	host, port := p.apiserver()
	for _, addr := range append([]string{net.JoinHostPort(host, port)}, p.o.Forward...) {
		if err := p.forward(addr); err != nil {
			return err
		}
	}
	rootfs := filepath.Join(p.dir, "rootfs")
	img, err := unpackImage(p.o.Image, filepath.Join(p.dir, "image"), rootfs)
	if err != nil {
		return err
	}
	uid, gid, err := p.user(c, img.User)
	if err != nil {
		return err
	}
	env, err := p.env(ctx, img.Env, c)
	if err != nil {
		return err
	}
	mounts, err := p.mounts(ctx, c)
	if err != nil {
		return err
	}
	etc, err := p.etcFiles()
	if err != nil {
		return err
	}
	argv, err := p.argv(c, img.Entrypoint, img.Cmd)
	if err != nil {
		return err
	}
	wd := c.WorkingDir
	if wd == "" {
		wd = img.WorkingDir
	}
	if wd == "" {
		wd = "/"
	}
	script, err := p.script(rootfs, append(mounts, etc...), c.SecurityContext != nil && ptrTrue(c.SecurityContext.ReadOnlyRootFilesystem))
	if err != nil {
		return err
	}
	tools, err := lookPaths("nsenter", "unshare", "sh", "env")
	if err != nil {
		return err
	}
	// nsenter into the network namespace; unshare mount, PID and UTS
	// namespaces (it waits for the container, PID 1 there, and exits with
	// its status); the script names the host and mounts, then execs env -i
	// (exactly the container's environment) and nsenter again to chroot,
	// set the user and the working directory.
	args := []string{"--net=" + p.ns.Path(), "--", tools[1], "--mount", "--uts", "--pid", "--propagation", "private", "--fork", "--",
		tools[2], "-c", script, "podrun", tools[3], "-i"}
	args = append(args, env...)
	args = append(args, tools[0], "--root="+rootfs, "--wd="+filepath.Join(rootfs, wd), "-S", strconv.Itoa(uid), "-G", strconv.Itoa(gid), "--")
	args = append(args, argv...)
	p.cmd = exec.Command(tools[0], args...)
	p.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return err
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return nil
}

// user is the uid and gid the container runs as: the security context's
// (the container's over the pod's), else the image's; runAsNonRoot is
// checked as the kubelet does.
func (p *Pod) user(c corev1.Container, image string) (int, int, error) {
	uid, gid := -1, -1
	if u, g, ok := strings.Cut(image, ":"); image != "" {
		uid, _ = strconv.Atoi(u)
		if ok {
			gid, _ = strconv.Atoi(g)
		}
	}
	nonRoot := false
	for _, sc := range []*corev1.PodSecurityContext{p.o.Spec.SecurityContext, containerContext(c)} {
		if sc == nil {
			continue
		}
		if sc.RunAsUser != nil {
			uid = int(*sc.RunAsUser)
		}
		if sc.RunAsGroup != nil {
			gid = int(*sc.RunAsGroup)
		}
		nonRoot = nonRoot || ptrTrue(sc.RunAsNonRoot)
	}
	if uid < 0 {
		uid = 0
	}
	if gid < 0 {
		gid = uid
	}
	if nonRoot && uid == 0 {
		return 0, 0, fmt.Errorf("%w: container has runAsNonRoot and image will run as root", ErrNotStarted)
	}
	if sc := c.SecurityContext; sc != nil && sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
		return 0, 0, fmt.Errorf("capabilities.add %v: not supported", sc.Capabilities.Add)
	}
	return uid, gid, nil
}

// containerContext is the part of the container's security context the
// pod's can say too.
func containerContext(c corev1.Container) *corev1.PodSecurityContext {
	sc := c.SecurityContext
	if sc == nil {
		return nil
	}
	return &corev1.PodSecurityContext{RunAsUser: sc.RunAsUser, RunAsGroup: sc.RunAsGroup, RunAsNonRoot: sc.RunAsNonRoot}
}

// argv is the command line: the container's command (else the image's
// entrypoint) and args (else, without a command, the image's cmd).
func (p *Pod) argv(c corev1.Container, entrypoint, cmd []string) ([]string, error) {
	argv := c.Command
	if len(argv) == 0 {
		argv = entrypoint
		if len(c.Args) == 0 {
			argv = append(argv, cmd...)
		}
	}
	argv = append(append([]string{}, argv...), c.Args...)
	for _, a := range argv {
		if strings.Contains(a, "$(") {
			return nil, fmt.Errorf("$(VAR) expansion in %q is not supported", a)
		}
	}
	if len(argv) == 0 {
		return nil, errors.New("no command: neither the container nor the image has one")
	}
	return argv, nil
}

// etcFiles are /etc/hosts, /etc/hostname and /etc/resolv.conf, which the
// kubelet mounts into every container.
func (p *Pod) etcFiles() ([]mount, error) {
	dir := filepath.Join(p.dir, "etc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	files := map[string]string{
		"hosts":       "127.0.0.1\tlocalhost\n" + podIP + "\t" + p.o.Name + "\n",
		"hostname":    p.o.Name + "\n",
		"resolv.conf": "nameserver " + podIP + "\noptions ndots:5\n",
	}
	var out []mount
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
		out = append(out, mount{src: filepath.Join(dir, name), dst: "/etc/" + name, ro: false})
	}
	return out, nil
}

// script mounts the volumes and files into the root filesystem inside the
// new mount namespace, /proc and a minimal /dev, makes the root read-only
// when asked, and execs its arguments.
func (p *Pod) script(rootfs string, mounts []mount, readOnlyRoot bool) (string, error) {
	var b strings.Builder
	b.WriteString("set -e\n")
	fmt.Fprintf(&b, "echo %s > /proc/sys/kernel/hostname\n", quote(p.o.Name))
	fmt.Fprintf(&b, "mount --bind %s %s\n", quote(rootfs), quote(rootfs))
	for _, d := range []string{"proc", "dev"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return "", err
		}
	}
	fmt.Fprintf(&b, "mount -t proc proc %s\n", quote(filepath.Join(rootfs, "proc")))
	fmt.Fprintf(&b, "mount -t tmpfs -o mode=755,size=64k tmpfs %s\n", quote(filepath.Join(rootfs, "dev")))
	for _, d := range []string{"null", "zero", "random", "urandom"} {
		dst := quote(filepath.Join(rootfs, "dev", d))
		fmt.Fprintf(&b, ": > %s\nmount --bind /dev/%s %s\n", dst, d, dst)
	}
	for _, m := range mounts {
		if !path.IsAbs(m.dst) {
			return "", fmt.Errorf("mountPath %q is not absolute", m.dst)
		}
		dst := filepath.Join(rootfs, m.dst)
		// The mount point, made as a runtime makes it in the container's
		// writable layer.
		fi, err := os.Stat(m.src)
		if err != nil {
			return "", err
		}
		if fi.IsDir() {
			err = os.MkdirAll(dst, 0o755)
		} else if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
			err = os.WriteFile(dst, nil, 0o644)
		}
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "mount --bind %s %s\n", quote(m.src), quote(dst))
		if m.ro {
			fmt.Fprintf(&b, "mount -o remount,bind,ro %s\n", quote(dst))
		}
	}
	if readOnlyRoot {
		fmt.Fprintf(&b, "mount -o remount,bind,ro %s\n", quote(rootfs))
	}
	b.WriteString("exec \"$@\"\n")
	return b.String(), nil
}

// forward makes addr on the host reachable at addr inside the pod's
// namespace.
func (p *Pod) forward(addr string) error {
	l, err := p.ns.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("forward %s into the pod's network: %w", addr, err)
	}
	p.listeners = append(p.listeners, l)
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					return
				}
				defer out.Close()
				go func() { _, _ = io.Copy(out, in); _ = out.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(in, out)
			}()
		}
	}()
	return nil
}

// Dial connects to addr from inside the pod's network (its ports are at
// 127.0.0.1).
func (p *Pod) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return p.ns.Dial(ctx, network, addr)
}

// HTTP is a client whose connections start inside the pod's network.
func (p *Pod) HTTP() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: p.Dial, DisableKeepAlives: true}}
}

// Output is what the container wrote so far (stdout and stderr).
func (p *Pod) Output() string { return p.out.String() }

// Exited is closed when the container has exited.
func (p *Pod) Exited() <-chan struct{} { return p.done }

// ExitCode is the container's exit status (-1 while it runs).
func (p *Pod) ExitCode() int {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Stop ends the container as the kubelet does (SIGTERM, SIGKILL after the
// grace period, at most 10 s here), then its forwarders and network
// namespace. Its mounts go with its mount namespace.
func (p *Pod) Stop() {
	p.stopOnce.Do(func() {
		if p.cmd != nil && p.cmd.Process != nil {
			pgid := p.cmd.Process.Pid
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
			deadline := time.Now().Add(10 * time.Second)
			for syscall.Kill(-pgid, 0) == nil && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
			for end := time.Now().Add(5 * time.Second); syscall.Kill(-pgid, 0) == nil && time.Now().Before(end); {
				time.Sleep(20 * time.Millisecond) // until init has reaped them
			}
		}
		for _, l := range p.listeners {
			_ = l.Close()
		}
		p.ns.Delete()
	})
}

// Leftovers names what Stop did not remove: the network namespace,
// mounts under the pod's directory.
func (p *Pod) Leftovers() []string {
	var left []string
	if p.ns.Exists() {
		left = append(left, "network namespace "+p.ns.Name)
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil && bytes.Contains(b, []byte(" "+p.dir+"/")) {
		left = append(left, "mounts under "+p.dir)
	}
	return left
}

func ptrTrue(b *bool) bool { return b != nil && *b }

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func lookPaths(names ...string) ([]string, error) {
	out := make([]string, len(names))
	for i, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			return nil, fmt.Errorf("podrun needs %s on PATH (util-linux, coreutils): %w", n, err)
		}
		out[i] = p
	}
	return out, nil
}

// syncBuffer is a bytes.Buffer safe for the container's two streams.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(b)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
