//go:build realnode

package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hostScript is PID 1 of the node's PID and mount namespaces. Inside
// them, /run and /var/lib are private tmpfs (kubelet's root is
// /var/lib/kubelet, which KubeVirt hard-codes; containerd 1.6 writes
// /run/containerd whatever its config says; CNI caches in /var/lib/cni;
// virt-handler uses /run/kubevirt* and /var/lib/kubevirt-node-labeller),
// and / is recursively shared so that virt-handler's Bidirectional mounts
// propagate; the host's mounts are untouched. It reaps orphans and exits
// on SIGTERM.
const hostScript = `set -e
mount -t tmpfs -o mode=0755 kvg-run /run
mount -t tmpfs -o mode=0755 kvg-var-lib /var/lib
mkdir -p /var/lib/kubelet
mount --make-rshared /
trap 'exit 0' TERM
while :; do sleep 5 & wait $! || true; done
`

// makeHost starts the namespaces' PID 1. virt-handler treats PID 1 as the
// host (/proc/1/ns/mnt, /proc/1/root): this machine's own PID 1 cannot be
// entered, the namespace's can.
func (c *Cluster) makeHost() error {
	log, err := os.Create(c.path("logs/host.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command("nsenter", "--net=/run/netns/"+c.name,
		"unshare", "--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private", "bash", "-c", hostScript)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start the node's namespaces: %w", err)
	}
	c.host = &proc{name: "host", cmd: cmd, log: log}
	// unshare forks PID 1; it is ready once /run is private.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mounts", pid)); err == nil &&
				strings.Contains(string(mounts), "kvg-var-lib /var/lib ") && strings.Contains(string(mounts), "kvg-run /run ") {
				c.hostPID = pid
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("the node's namespaces did not come up (log %s)", c.path("logs/host.log"))
}

// enter is the nsenter prefix that runs a command on the node.
func (c *Cluster) enter() []string {
	ns := fmt.Sprintf("/proc/%d/ns/", c.hostPID)
	return []string{"--net=/run/netns/" + c.name, "--pid=" + ns + "pid", "--mount=" + ns + "mnt"}
}

// stopHost ends PID 1: the kernel kills whatever is left in the PID
// namespace, and the mount namespace (with every mount made in it) goes
// with its last process.
func (c *Cluster) stopHost() {
	if c.host == nil || c.host.cmd.ProcessState != nil {
		return
	}
	if c.hostPID != 0 {
		_ = syscall.Kill(c.hostPID, syscall.SIGKILL)
	}
	_ = syscall.Kill(-c.host.cmd.Process.Pid, syscall.SIGKILL)
	_ = c.host.cmd.Wait()
	c.host.log.Close()
}

// hostPaths are paths a node writes when not kept in its own mount
// namespace; Leftovers reports any that appeared while it ran.
var hostPaths = []string{"/var/lib/kubelet", "/var/lib/cni", "/var/lib/kubevirt-node-labeller", "/var/lib/kubevirt",
	"/run/containerd", "/run/kubevirt", "/run/kubevirt-private", "/run/kubevirt-libvirt-runtimes", "/run/libvirt"}

func existing(paths []string) map[string]bool {
	m := map[string]bool{}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			m[filepath.Clean(p)] = true
		}
	}
	return m
}
