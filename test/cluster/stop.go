//go:build realnode

package cluster

import (
	"bytes"
	"io/fs"
	"os"
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

// Stop tears the cluster down and leaves nothing: every process of the
// node is in its PID namespace and dies with the namespace's PID 1 (the
// containers' shims too), every mount of it with its mount namespace;
// then the network namespace, the cgroups, /run entries it made go. Added
// nodes stop first.
func (c *Cluster) Stop() {
	for _, n := range c.nodes {
		n.Stop()
	}
	c.stopHost()
	for _, p := range c.procs { // nsenter ends with what it ran
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Wait()
		}
		p.log.Close()
	}
	if c.ns != nil {
		c.ns.Delete()
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

// removeCgroup removes a cgroup directory and the ones under it, deepest
// first (cgroupfs directories are removed with rmdir, never their files);
// a cgroup whose last tasks are still exiting is busy for a moment, so it
// tries again for up to 5 s.
func removeCgroup(root string) {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
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
		if _, err := os.Stat(root); os.IsNotExist(err) || time.Now().After(deadline) {
			return
		}
	}
}

// Leftovers lists what a stopped cluster left: mounts under its folder,
// its nodes' namespaces and cgroups, processes naming its folder.
func (c *Cluster) Leftovers() []string {
	var left []string
	for _, n := range c.nodes {
		left = append(left, n.nsLeftovers()...)
	}
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil && bytes.Contains(b, []byte(" "+c.dir+"/")) {
		left = append(left, "mounts under "+c.dir)
	}
	for p := range existing(hostPaths) {
		if !c.hostPaths[p] {
			left = append(left, "host path "+p)
		}
	}
	left = append(left, c.nsLeftovers()...)
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

// nsLeftovers are the node's network namespace and cgroups, if still
// there.
func (c *Cluster) nsLeftovers() []string {
	var left []string
	if _, err := os.Stat("/run/netns/" + c.name); err == nil {
		left = append(left, "network namespace "+c.name)
	}
	for _, d := range c.cgroups() {
		if _, err := os.Stat(d); err == nil {
			left = append(left, "cgroup "+d)
		}
	}
	return left
}
