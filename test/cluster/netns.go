//go:build realnode

package cluster

import (
	"context"
	"fmt"
	"net"

	"github.com/kvgitops/kvgitops/test/netns"
)

// run runs a command on the host and says what failed.
func run(name string, args ...string) error { return netns.Run(name, args...) }

// makeNetns creates the first node's namespace: loopback up, the node
// address on a veth pair with both ends inside (no link to the host), a
// default route into it, forwarding on.
func (c *Cluster) makeNetns() error {
	ns, err := netns.Add(c.name)
	if err != nil {
		return err
	}
	c.ns = ns
	return ipAll(c.name, [][]string{
		{"link", "add", "node0", "type", "veth", "peer", "name", "node0-peer"},
		{"addr", "add", NodeIP + "/24", "dev", "node0"},
		{"link", "set", "node0", "up"},
		{"link", "set", "node0-peer", "up"},
		{"route", "add", "default", "via", gatewayIP, "dev", "node0"},
	})
}

// link creates node n's namespace, joined to the first node's by a veth
// pair: n's address and pod range routed into it on the first node's side,
// everything else routed to the first node on n's side; forwarding on in
// both. Nothing is linked to the host.
func (c *Cluster) link(n *Cluster) error {
	ns, err := netns.Add(n.name)
	if err != nil {
		return err
	}
	n.ns = ns
	dev := fmt.Sprintf("node%d", n.index)
	if err := ipAll(c.name, [][]string{
		{"link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", n.name},
		{"link", "set", dev, "up"},
		{"route", "add", nodeIP(n.index) + "/32", "dev", dev, "src", NodeIP},
		{"route", "add", podCIDR(n.index), "via", nodeIP(n.index), "dev", dev, "src", NodeIP},
	}); err != nil {
		return err
	}
	return ipAll(n.name, [][]string{
		{"addr", "add", nodeIP(n.index) + "/24", "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"route", "add", "default", "via", NodeIP, "dev", "eth0"},
	})
}

// ipAll runs each `ip` command in namespace name, then turns forwarding on
// there.
func ipAll(name string, cmds [][]string) error {
	for _, args := range cmds {
		if err := run("ip", append([]string{"-n", name}, args...)...); err != nil {
			return err
		}
	}
	return run("nsenter", "--net=/run/netns/"+name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
}

// dial connects from inside the namespace.
func (c *Cluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return c.ns.Dial(ctx, network, addr)
}
