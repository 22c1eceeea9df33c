//go:build realnode

package cluster

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupControllers are the cgroup v1 hierarchies the node's pods live in
// (kubelet's cgroupRoot, made beforehand in each).
var cgroupControllers = []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd"}

func (c *Cluster) makeCgroups() error {
	for _, ctl := range cgroupControllers {
		d := filepath.Join("/sys/fs/cgroup", ctl, c.name)
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
		c.cgroupsMade = append(c.cgroupsMade, d)
	}
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuset", f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join("/sys/fs/cgroup/cpuset", c.name, f), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Stop tears the cluster down and leaves nothing: every process (the
// containers' shims too), every mount under its folder, the namespace,
// its cgroups, /run entries it made.
func (c *Cluster) Stop() {
	for _, n := range []string{"kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager"} {
		c.stop(n)
	}
	if c.running("containerd") {
		for _, verb := range [][]string{{"tasks", "kill", "-s", "SIGKILL"}, {"tasks", "rm", "-f"}, {"containers", "rm"}} {
			for _, id := range c.ctrList(verb[0]) {
				_ = c.ctr(append(slices.Clone(verb), id)...)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	c.stop("containerd")
	c.killShims()
	c.stop("kube-apiserver")
	c.stop("etcd")
	c.stopHost()
	c.unmountAll()
	if c.netnsMade {
		_ = run("ip", "netns", "del", c.name)
	}
	if c.createdRunNetns {
		if entries, err := os.ReadDir("/run/netns"); err == nil && len(entries) == 0 {
			_ = syscall.Unmount("/run/netns", 0)
			_ = os.Remove("/run/netns")
		}
	}
	for _, d := range c.cgroups() {
		removeCgroup(d)
	}
}

// cgroups are the cgroup directories of the node: the ones made for it
// and the one kubelet makes in the (empty) cgroup2 hierarchy.
func (c *Cluster) cgroups() []string {
	if c.name == "" {
		return nil
	}
	return append(slices.Clone(c.cgroupsMade), filepath.Join("/sys/fs/cgroup/unified", c.name))
}

func (c *Cluster) running(name string) bool {
	for _, p := range c.procs {
		if p.name == name && p.cmd.ProcessState == nil {
			return true
		}
	}
	return false
}

// stop sends SIGTERM to the process's group (nsenter and what it runs),
// waits up to 10s, then kills the group.
func (c *Cluster) stop(name string) {
	for _, p := range c.procs {
		if p.name != name || p.cmd.ProcessState != nil {
			continue
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		p.log.Close()
	}
}

func (c *Cluster) ctrList(what string) []string {
	out, err := execOutput("ctr", "--address", c.socket(), "-n", "k8s.io", what, "ls", "-q")
	if err != nil {
		return nil
	}
	return strings.Fields(out)
}

// killShims: containerd's shims outlive it; they carry its socket on
// their command line.
func (c *Cluster) killShims() {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(c.socket())) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountAll unmounts everything under the folder, deepest first.
func (c *Cluster) unmountAll() {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 1 && strings.HasPrefix(fields[1], c.dir+"/") {
			mounts = append(mounts, fields[1])
		}
	}
	slices.Sort(mounts)
	for _, m := range slices.Backward(mounts) {
		if syscall.Unmount(m, 0) != nil {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
}

// removeCgroup removes a cgroup directory and the ones under it, deepest
// first (cgroupfs directories are removed with rmdir, never their files).
func removeCgroup(root string) {
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for _, d := range slices.Backward(dirs) {
		_ = syscall.Rmdir(d)
	}
}

// Leftovers lists what a stopped cluster left: mounts under its folder,
// its namespace, its cgroups, processes naming its folder.
func (c *Cluster) Leftovers() []string {
	var left []string
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil && bytes.Contains(b, []byte(" "+c.dir+"/")) {
		left = append(left, "mounts under "+c.dir)
	}
	for p := range existing(hostPaths) {
		if !c.hostPaths[p] {
			left = append(left, "host path "+p)
		}
	}
	if _, err := os.Stat("/run/netns/" + c.name); err == nil {
		left = append(left, "network namespace "+c.name)
	}
	for _, d := range c.cgroups() {
		if _, err := os.Stat(d); err == nil {
			left = append(left, "cgroup "+d)
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(cmdline, []byte(c.dir)) {
			left = append(left, "process "+e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return left
}

func execOutput(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout = &out
	err := cmd.Run()
	return out.String(), err
}
