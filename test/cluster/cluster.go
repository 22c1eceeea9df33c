//go:build realnode

package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kvgitops/kvgitops/test/netns"
)

// Cluster is one running cluster: its first node runs the control plane
// too; AddNode adds more.
type Cluster struct {
	// Config reaches the apiserver inside the namespace as an
	// administrator.
	Config *rest.Config

	name, dir        string
	pki              *pki
	procs            []*proc
	ns               *netns.NS // nil until made
	cgroupsMade      []string
	testbin, nodeBin string
	// host is PID 1 of the node's PID and mount namespaces (host.go).
	host      *proc
	hostPID   int
	hostPaths map[string]bool // hostPaths that existed before Start
	// index is the node's number (0: the first); nodes are the ones
	// AddNode added (each a Cluster without a control plane, sharing the
	// first's PKI and Config).
	index int
	nodes []*Cluster
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
}

// Options say where the binaries are.
type Options struct {
	// Testbin holds etcd and kube-apiserver (KUBEBUILDER_ASSETS);
	// NodeBin kubelet and the rest (hack/node.sh).
	Testbin, NodeBin string
	// Images are OCI archives to import (ociArchive); the sandbox image is
	// among them.
	Images []string
}

// Start brings a cluster up: namespace, certificates, etcd, apiserver,
// controller-manager, scheduler, containerd (images imported), kubelet,
// kube-proxy; it returns once the node is Ready. On failure it stops what
// it started.
func Start(ctx context.Context, dir string, opts Options) (c *Cluster, err error) {
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	c = &Cluster{name: "kvg-" + hex.EncodeToString(suffix), dir: dir, testbin: opts.Testbin, nodeBin: opts.NodeBin,
		hostPaths: existing(hostPaths)}
	defer func() {
		if err != nil {
			c.Stop()
			c = nil
		}
	}()
	for _, d := range []string{"logs", "etcd", "pod-logs", "cni/ipam", "containerd"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return c, err
		}
	}
	if c.pki, err = newPKI(c.path("pki"), c.name, net.ParseIP(NodeIP)); err != nil {
		return c, err
	}
	server := "https://" + NodeIP + ":6443"
	for _, n := range []string{"admin", "kubelet", "controller-manager", "scheduler", "kube-proxy"} {
		if err := c.pki.kubeconfig(c.path(n+".kubeconfig"), n, server); err != nil {
			return c, err
		}
	}
	c.Config = &rest.Config{Host: server, Dial: c.dial, TLSClientConfig: rest.TLSClientConfig{
		CAFile: c.pki.path("ca.crt"), CertFile: c.pki.path("admin.crt"), KeyFile: c.pki.path("admin.key")}}
	return c, c.bringUp(ctx, opts.Images, c.makeNetns, func() error { return c.controlPlane(ctx) })
}

// bringUp makes the node's network namespace (netns), cgroups, PID and
// mount namespaces and configuration, runs then (the first node: the
// control plane), starts containerd with images and kubelet, and waits
// for the node to be Ready.
func (c *Cluster) bringUp(ctx context.Context, images []string, netns, then func() error) error {
	for _, step := range []func() error{netns, c.makeCgroups, c.makeHost, c.writeConfigs, then,
		func() error { return c.runtime(ctx, images) }} {
		if err := step(); err != nil {
			return err
		}
	}
	return c.node(ctx)
}

func (c *Cluster) path(p string) string { return filepath.Join(c.dir, p) }
func (c *Cluster) socket() string       { return c.path("containerd/containerd.sock") }

// Name is the node's (and the namespace's) name.
func (c *Cluster) Name() string { return c.name }

func (c *Cluster) controlPlane(ctx context.Context) error {
	p := c.pki.path
	if err := c.start("etcd", filepath.Join(c.testbin, "etcd"), "--data-dir", c.path("etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--unsafe-no-fsync"); err != nil {
		return err
	}
	if err := c.start("kube-apiserver", filepath.Join(c.testbin, "kube-apiserver"), "--etcd-servers", "http://127.0.0.1:2379",
		"--bind-address", "0.0.0.0", "--secure-port", "6443", "--advertise-address", NodeIP,
		"--tls-cert-file", p("apiserver.crt"), "--tls-private-key-file", p("apiserver.key"), "--client-ca-file", p("ca.crt"),
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", p("sa.pub"),
		"--service-account-signing-key-file", p("sa.key"), "--service-cluster-ip-range", serviceCIDR,
		"--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction", "--allow-privileged=true",
		"--kubelet-preferred-address-types", "InternalIP",
		"--kubelet-client-certificate", p("apiserver-kubelet-client.crt"), "--kubelet-client-key", p("apiserver-kubelet-client.key"),
		"--requestheader-client-ca-file", p("front-proxy-ca.crt"), "--requestheader-allowed-names", "front-proxy-client",
		"--requestheader-username-headers", "X-Remote-User", "--requestheader-group-headers", "X-Remote-Group",
		"--requestheader-extra-headers-prefix", "X-Remote-Extra-",
		"--proxy-client-cert-file", p("front-proxy-client.crt"), "--proxy-client-key-file", p("front-proxy-client.key")); err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	if err := c.until(ctx, time.Minute, "the apiserver ready", func() bool {
		return kube.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error() == nil
	}); err != nil {
		return err
	}
	kc := func(n string) string { return c.path(n + ".kubeconfig") }
	if err := c.start("kube-controller-manager", filepath.Join(c.nodeBin, "kube-controller-manager"), "--kubeconfig", kc("controller-manager"),
		"--authentication-kubeconfig", kc("controller-manager"), "--authorization-kubeconfig", kc("controller-manager"),
		"--service-account-private-key-file", p("sa.key"), "--root-ca-file", p("ca.crt"), "--use-service-account-credentials",
		"--bind-address", "127.0.0.1", "--leader-elect=false", "--cluster-signing-cert-file", p("ca.crt"), "--cluster-signing-key-file", p("ca.key")); err != nil {
		return err
	}
	return c.start("kube-scheduler", filepath.Join(c.nodeBin, "kube-scheduler"), "--kubeconfig", kc("scheduler"),
		"--authentication-kubeconfig", kc("scheduler"), "--authorization-kubeconfig", kc("scheduler"),
		"--bind-address", "127.0.0.1", "--leader-elect=false")
}

// runtime starts containerd and imports the images.
func (c *Cluster) runtime(ctx context.Context, images []string) error {
	if err := c.start("containerd", "containerd", "--config", c.path("containerd.toml")); err != nil {
		return err
	}
	if err := c.until(ctx, 30*time.Second, c.name+"'s containerd", func() bool { return c.ctr("version") == nil }); err != nil {
		return err
	}
	for _, img := range images {
		if err := c.ctr("images", "import", img); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) ctr(args ...string) error {
	return run("ctr", append([]string{"--address", c.socket(), "-n", "k8s.io"}, args...)...)
}

// node starts kubelet and kube-proxy and waits for the node to be Ready.
func (c *Cluster) node(ctx context.Context) error {
	if err := c.start("kubelet", filepath.Join(c.nodeBin, "kubelet"), "--config", c.path("kubelet.yaml"),
		"--kubeconfig", c.path("kubelet.kubeconfig"), "--root-dir", "/var/lib/kubelet",
		"--hostname-override", c.name, "--node-ip", nodeIP(c.index), "--v=1"); err != nil {
		return err
	}
	if err := c.start("kube-proxy", filepath.Join(c.nodeBin, "kube-proxy"), "--kubeconfig", c.path("kube-proxy.kubeconfig"),
		"--hostname-override", c.name, "--proxy-mode", "iptables", "--cluster-cidr", clusterCIDR,
		"--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "0", "--conntrack-tcp-timeout-close-wait", "0",
		"--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256"); err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	err = c.until(ctx, 2*time.Minute, "node "+c.name+" Ready", func() bool {
		n, err := kube.CoreV1().Nodes().Get(ctx, c.name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue
			}
		}
		return false
	})
	if err != nil || c.index > 0 {
		return err
	}
	// The first node is the control plane's too (a kubelet may not label
	// itself so): KubeVirt's install-strategy Job asks for one.
	patch := []byte(`{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`)
	_, err = kube.CoreV1().Nodes().Patch(ctx, c.name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// start runs argv on the node: in its network, PID and mount namespaces
// (host.go), in a process group of its own.
func (c *Cluster) start(name string, argv ...string) error {
	log, err := os.Create(c.path("logs/" + name + ".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command("nsenter", append(c.enter(), argv...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	c.procs = append(c.procs, &proc{name: name, cmd: cmd, log: log})
	return nil
}

// until polls cond; on timeout it names what it waited for and the last
// lines of every log.
func (c *Cluster) until(ctx context.Context, limit time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("waiting for %s: %w", what, errors.Join(context.DeadlineExceeded, ctx.Err()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// Log is the named process's log file.
func (c *Cluster) Log(name string) string { return c.path("logs/" + name + ".log") }
