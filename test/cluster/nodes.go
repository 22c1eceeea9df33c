//go:build realnode

package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
)

// AddNode adds a node to the cluster and returns once it is Ready: its own
// network namespace linked to the first node's by a veth pair (each side
// routes the other's address and pod range), its own PID and mount
// namespaces (private /run and /var/lib: kubelet's, containerd's and
// KubeVirt's node state), cgroups, containerd with images imported,
// kubelet and kube-proxy. Its logs are in its own folder; Stop stops it
// with the cluster.
func (c *Cluster) AddNode(ctx context.Context, images []string) (*Cluster, error) {
	i := len(c.nodes) + 1
	n := &Cluster{name: fmt.Sprintf("%s-n%d", c.name, i), dir: c.path(fmt.Sprintf("node%d", i)), index: i,
		Config: c.Config, pki: c.pki, nodeBin: c.nodeBin, hostPaths: c.hostPaths}
	c.nodes = append(c.nodes, n) // Stop stops it, however far it got
	for _, d := range []string{"logs", "pod-logs", "cni/ipam", "containerd"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return nil, err
		}
	}
	kubelet := "kubelet-" + n.name
	if err := c.pki.issue(int64(100+i), identity{name: kubelet, cn: "system:node:" + n.name, orgs: []string{"system:nodes"}, server: true},
		n.name, net.ParseIP(nodeIP(i))); err != nil {
		return nil, err
	}
	server := "https://" + NodeIP + ":6443"
	if err := c.pki.kubeconfig(n.path("kubelet.kubeconfig"), kubelet, server); err != nil {
		return nil, err
	}
	if err := c.pki.kubeconfig(n.path("kube-proxy.kubeconfig"), "kube-proxy", server); err != nil {
		return nil, err
	}
	return n, n.bringUp(ctx, images, func() error { return c.link(n) }, func() error { return nil })
}

// Nodes are the cluster's nodes, the first one first.
func (c *Cluster) Nodes() []*Cluster { return append([]*Cluster{c}, c.nodes...) }
