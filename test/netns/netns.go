package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// NS is one named network namespace.
type NS struct {
	// Name is its name under /run/netns.
	Name string
	// createdRun: /run/netns did not exist before it (ip made and mounted
	// it), so the last namespace removes it.
	createdRun bool
}

// Add creates the namespace name with its loopback up.
func Add(name string) (*NS, error) {
	n := &NS{Name: name}
	if _, err := os.Stat("/run/netns"); os.IsNotExist(err) {
		n.createdRun = true
	}
	if err := Run("ip", "netns", "add", name); err != nil {
		return nil, err
	}
	if err := Run("ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		n.Delete()
		return nil, err
	}
	return n, nil
}

// Path is the namespace's file (nsenter --net=Path).
func (n *NS) Path() string { return "/run/netns/" + n.Name }

// Delete removes the namespace (and /run/netns when Add made it and it is
// empty now).
func (n *NS) Delete() {
	_ = Run("ip", "netns", "del", n.Name)
	if n.createdRun {
		if entries, err := os.ReadDir("/run/netns"); err == nil && len(entries) == 0 {
			_ = syscall.Unmount("/run/netns", 0)
			_ = os.Remove("/run/netns")
		}
	}
}

// Exists says whether the namespace is still there.
func (n *NS) Exists() bool {
	_, err := os.Stat(n.Path())
	return err == nil
}

// Do runs f on a thread moved into the namespace: sockets f makes are the
// namespace's. The thread is never unlocked, so it ends with its goroutine
// and no other goroutine runs there.
func (n *NS) Do(f func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := os.Open(n.Path())
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter %s: %w", n.Name, err)
			return
		}
		f()
		errc <- nil
	}()
	return <-errc
}

// Dial connects from inside the namespace.
func (n *NS) Dial(ctx context.Context, network, addr string) (conn net.Conn, err error) {
	if nsErr := n.Do(func() { conn, err = (&net.Dialer{}).DialContext(ctx, network, addr) }); nsErr != nil {
		return nil, nsErr
	}
	return conn, err
}

// Listen makes a listener inside the namespace.
func (n *NS) Listen(network, addr string) (l net.Listener, err error) {
	if nsErr := n.Do(func() { l, err = net.Listen(network, addr) }); nsErr != nil {
		return nil, nsErr
	}
	return l, err
}

// Run runs a command on the host and says what failed.
func Run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return nil
}
