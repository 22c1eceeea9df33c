//go:build realnode

package cluster

import (
	"fmt"
	"os"
	"path/filepath"
)

// The nodes' addresses inside their namespaces: the same in every
// cluster, as each has its own namespaces. NodeIP is the first node's (the
// control plane's); a node added with AddNode has nodeIP(i) and pods in
// podCIDR(i), routed over a veth pair to the first.
const (
	NodeIP      = "10.77.0.10"
	gatewayIP   = "10.77.0.1"
	clusterCIDR = "10.88.0.0/16"
	serviceCIDR = "10.96.0.0/24"
	// PauseImage is the sandbox image; pods use their images with
	// imagePullPolicy Never.
	PauseImage = "registry.local/pause:1"
)

func nodeIP(i int) string  { return fmt.Sprintf("10.77.0.%d", 10+i) }
func podCIDR(i int) string { return fmt.Sprintf("10.88.%d.0/24", i) }

// writeConfigs writes containerd's, the CNI's and kubelet's configuration.
func (c *Cluster) writeConfigs() error {
	for name, text := range map[string]string{
		"containerd.toml": fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = "%[3]s.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  # no process here holds CAP_SYS_RESOURCE: runc cannot lower oom_score_adj
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[6]q
`, c.path("containerd/root"), c.path("containerd/state"), c.socket(), c.path("containerd/opt"), PauseImage, c.path("cni/net.d")),
		"cni/net.d/10-bridge.conflist": fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": %q,
  "plugins": [{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}}]
}
`, c.name, podCIDR(c.index), c.path("cni/ipam")),
		"kubelet.yaml": fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /%[1]s
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://%[2]s
podLogsDir: %[3]q
address: %[4]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[5]q}
authorization: {mode: Webhook}
resolvConf: %[6]q
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
registerNode: true
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
fileCheckFrequency: 5s
`, c.name, c.socket(), c.path("pod-logs"), nodeIP(c.index), c.pki.path("ca.crt"), c.path("resolv.conf")),
		"resolv.conf": "nameserver 127.0.0.1\n",
	} {
		p := c.path(name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}
