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

// inNamespace runs f on a thread moved into the namespace: sockets f makes
// are the namespace's. The thread is never unlocked, so it ends with its
// goroutine and no other goroutine runs there.
func (c *Cluster) inNamespace(f func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := os.Open("/run/netns/" + c.name)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter %s: %w", c.name, err)
			return
		}
		f()
		errc <- nil
	}()
	return <-errc
}

// dial connects from inside the namespace.
func (c *Cluster) dial(ctx context.Context, network, addr string) (conn net.Conn, err error) {
	if nsErr := c.inNamespace(func() { conn, err = (&net.Dialer{}).DialContext(ctx, network, addr) }); nsErr != nil {
		return nil, nsErr
	}
	return conn, err
}

// listen makes a listener inside the namespace.
func (c *Cluster) listen(network, addr string) (l net.Listener, err error) {
	if nsErr := c.inNamespace(func() { l, err = net.Listen(network, addr) }); nsErr != nil {
		return nil, nsErr
	}
	return l, err
}
