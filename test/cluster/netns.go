//go:build realnode

package cluster

import (
	"context"
	"net"

	"github.com/kvgitops/kvgitops/test/netns"
)

// run runs a command on the host and says what failed.
func run(name string, args ...string) error { return netns.Run(name, args...) }

// makeNetns creates the namespace: loopback up, the node address on a veth
// pair with both ends inside (no link to the host), a default route into
// it, forwarding on.
func (c *Cluster) makeNetns() error {
	ns, err := netns.Add(c.name)
	if err != nil {
		return err
	}
	c.ns = ns
	for _, args := range [][]string{
		{"link", "add", "node0", "type", "veth", "peer", "name", "node0-peer"},
		{"addr", "add", NodeIP + "/24", "dev", "node0"},
		{"link", "set", "node0", "up"},
		{"link", "set", "node0-peer", "up"},
		{"route", "add", "default", "via", gatewayIP, "dev", "node0"},
	} {
		if err := run("ip", append([]string{"-n", c.name}, args...)...); err != nil {
			return err
		}
	}
	return run("nsenter", "--net="+ns.Path(), "sysctl", "-qw", "net.ipv4.ip_forward=1")
}

// dial connects from inside the namespace.
func (c *Cluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return c.ns.Dial(ctx, network, addr)
}
