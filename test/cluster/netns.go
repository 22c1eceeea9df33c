//go:build realnode

package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// run runs a command on the host and says what failed.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return nil
}

// makeNetns creates the namespace: loopback up, the node address on a veth
// pair with both ends inside (no link to the host), a default route into
// it, forwarding on.
func (c *Cluster) makeNetns() error {
	if _, err := os.Stat("/run/netns"); os.IsNotExist(err) {
		c.createdRunNetns = true
	}
	if err := run("ip", "netns", "add", c.name); err != nil {
		return err
	}
	c.netnsMade = true
	ns := []string{"-n", c.name}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "node0", "type", "veth", "peer", "name", "node0-peer"},
		{"addr", "add", NodeIP + "/24", "dev", "node0"},
		{"link", "set", "node0", "up"},
		{"link", "set", "node0-peer", "up"},
		{"route", "add", "default", "via", gatewayIP, "dev", "node0"},
	} {
		if err := run("ip", append(ns, args...)...); err != nil {
			return err
		}
	}
	return run("nsenter", "--net=/run/netns/"+c.name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
}

// dial connects from inside the namespace: the socket is made on a thread
// moved into it (the thread ends with the goroutine, never reused).
func (c *Cluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread leaves with the goroutine
		f, err := os.Open("/run/netns/" + c.name)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("enter %s: %w", c.name, err)}
			return
		}
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// listen makes a listener inside the namespace, the way dial connects.
func (c *Cluster) listen(network, addr string) (net.Listener, error) {
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread leaves with the goroutine
		f, err := os.Open("/run/netns/" + c.name)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("enter %s: %w", c.name, err)}
			return
		}
		l, err := net.Listen(network, addr)
		ch <- result{l, err}
	}()
	r := <-ch
	return r.l, r.err
}
