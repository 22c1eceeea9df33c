//go:build realnode

package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

var vmimGVR = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachineinstancemigrations"}

// migrateGuests commits the desired file with LiveMigrate on (the agent
// applies it in a Configure step) and waits for KubeVirt's workload
// updater to live-migrate every outdated guest (moved checks each).
func (r *realKubeVirt) migrateGuests(ctx context.Context, gs []guest) {
	r.t.Helper()
	before := map[string]*unstructured.Unstructured{}
	for _, g := range gs {
		vmi, err := r.dyn.Resource(vmiGVR).Namespace("vms").Get(ctx, g.name, metav1.GetOptions{})
		if err != nil {
			r.t.Fatal(err)
		}
		before[g.name] = vmi
	}
	watch := r.watchPhases(ctx, gs)
	r.commit(migratingKubeVirt(nodeTags[1]), "live-migrate outdated VMIs")
	since := time.Now()
	r.waitStatus(ctx, 3*time.Minute, "LiveMigrate applied", func(s map[string]any) bool {
		return s["reason"] == "UpToDate" && strings.Contains(fmt.Sprint(s["desiredRevision"]), r.rev)
	})
	configured := time.Since(since).Round(time.Second)
	// When each guest was first seen past each mark, after the commit.
	seen := map[string]time.Duration{}
	mark := func(name string, ok bool) bool {
		if _, done := seen[name]; ok && !done {
			seen[name] = time.Since(since).Round(time.Second)
		}
		return ok
	}
	migrated := func(g guest) bool {
		vmi, err := r.dyn.Resource(vmiGVR).Namespace("vms").Get(ctx, g.name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		ms, _, _ := unstructured.NestedMap(vmi.Object, "status", "migrationState")
		_, outdated := vmi.GetLabels()["kubevirt.io/outdatedLauncherImage"]
		completed := mark(g.name+" completed", ms["completed"] == true && nodeOf(vmi) != nodeOf(before[g.name]))
		current := mark(g.name+" not outdated", !outdated)
		gone := mark(g.name+" source qemu gone", !alive(g))
		return completed && current && gone
	}
	if err := r.c.until(ctx, 5*time.Minute, "the guests live-migrated, their source qemu gone", func() bool {
		all := true
		for _, g := range gs { // each looked at, for its marks
			all = migrated(g) && all
		}
		return all
	}); err != nil {
		r.t.Fatalf("%v; seen after the commit: %v; the migrations: %s\n%s\n%s", err, seen, r.migrations(ctx), r.migrationReport(ctx), r.report(ctx))
	}
	phases := watch()
	r.t.Logf("LiveMigrate applied by the agent %s after the commit; the guests migrated %s after it (seen after the commit: %v)",
		configured, time.Since(since).Round(time.Second), seen)
	for _, g := range gs {
		r.moved(ctx, g, before[g.name], phases[g.name])
	}
}

// moved checks g was live-migrated: the same VMI (UID), Running at every
// look while it moved, on another node, in a v1.8.4 launcher, not labelled
// outdated, in a new qemu process with the source's gone.
func (r *realKubeVirt) moved(ctx context.Context, g guest, before *unstructured.Unstructured, phases []string) {
	r.t.Helper()
	vmi, err := r.dyn.Resource(vmiGVR).Namespace("vms").Get(ctx, g.name, metav1.GetOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	launcher, _, _ := unstructured.NestedString(vmi.Object, "status", "launcherContainerImageVersion")
	ms, _, _ := unstructured.NestedMap(vmi.Object, "status", "migrationState")
	_, outdated := vmi.GetLabels()["kubevirt.io/outdatedLauncherImage"]
	pid, _ := qemuOf("vms", g.name)
	switch {
	case vmi.GetUID() != before.GetUID():
		r.t.Errorf("guest %s was replaced (uid %s, was %s), not migrated", g.name, vmi.GetUID(), before.GetUID())
	case fmt.Sprint(phases) != "[Running]":
		r.t.Errorf("guest %s went through phases %v while it moved; want Running only", g.name, phases)
	case nodeOf(vmi) == nodeOf(before) || ms["completed"] != true || ms["failed"] == true:
		r.t.Errorf("guest %s was not live-migrated: on %s (was %s), migration state %v\n%s", g.name, nodeOf(vmi), nodeOf(before), ms, r.migrationReport(ctx))
	case outdated || launcher != KubeVirtRegistry+"/virt-launcher:"+nodeTags[1]:
		r.t.Errorf("guest %s runs launcher %s after the migration (outdated label %v), want %s's", g.name, launcher, outdated, nodeTags[1])
	case pid == 0 || pid == g.pid || alive(g):
		r.t.Errorf("guest %s: qemu %d after the migration, the source's %d still there: %v", g.name, pid, g.pid, alive(g))
	}
	r.t.Logf("guest %s migrated %s → %s (qemu %d → %d), %s–%s; the migrations: %s", g.name, ms["sourceNode"], ms["targetNode"], g.pid, pid,
		ms["startTimestamp"], ms["endTimestamp"], r.migrations(ctx))
}

// alive says whether the guest's first qemu process still runs.
func alive(g guest) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", g.pid))
	return err == nil && strings.Contains(string(b), "qemu-system") && strings.Contains(string(b), "guest=vms_"+g.name)
}

func nodeOf(u *unstructured.Unstructured) string {
	n, _, _ := unstructured.NestedString(u.Object, "status", "nodeName")
	return n
}

// watchPhases polls the guests' phases until the returned function is
// called; that returns the distinct phases each went through, in order.
func (r *realKubeVirt) watchPhases(ctx context.Context, gs []guest) func() map[string][]string {
	done := make(chan struct{})
	out := make(chan map[string][]string, 1)
	go func() {
		seen := map[string][]string{}
		for {
			for _, g := range gs {
				vmi, err := r.dyn.Resource(vmiGVR).Namespace("vms").Get(ctx, g.name, metav1.GetOptions{})
				if err != nil {
					continue
				}
				p, _, _ := unstructured.NestedString(vmi.Object, "status", "phase")
				if l := seen[g.name]; len(l) == 0 || l[len(l)-1] != p {
					seen[g.name] = append(l, p)
				}
			}
			select {
			case <-done:
				out <- seen
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return func() map[string][]string { close(done); return <-out }
}

// migrationReport says how the migrations went: each migration object's
// status, the guests' migration states, and the last lines of
// virt-controller's, virt-handler's and the launchers' logs.
func (r *realKubeVirt) migrationReport(ctx context.Context) string {
	var b strings.Builder
	if l, err := r.dyn.Resource(vmimGVR).Namespace("vms").List(ctx, metav1.ListOptions{}); err == nil {
		for _, m := range l.Items {
			st, _ := yaml.Marshal(m.Object["status"])
			fmt.Fprintf(&b, "migration %s:\n%s\n", m.GetName(), st)
		}
	}
	if l, err := r.dyn.Resource(vmiGVR).Namespace("vms").List(ctx, metav1.ListOptions{}); err == nil {
		for _, vmi := range l.Items {
			st, _ := yaml.Marshal(vmi.Object["status"])
			fmt.Fprintf(&b, "VMI %s status:\n%s\n", vmi.GetName(), st)
		}
	}
	for _, ns := range []string{"kubevirt", "vms"} {
		pods, err := r.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, p := range pods.Items {
			if !strings.HasPrefix(p.Name, "virt-handler") && !strings.HasPrefix(p.Name, "virt-launcher") && !strings.HasPrefix(p.Name, "virt-controller") {
				continue
			}
			for _, cs := range p.Spec.Containers {
				tail := int64(30)
				logs, err := r.kube.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: cs.Name, TailLines: &tail}).DoRaw(ctx)
				fmt.Fprintf(&b, "--- %s/%s [%s] on %s: %v\n%s\n", ns, p.Name, cs.Name, p.Spec.NodeName, err, logs)
			}
		}
	}
	return b.String()
}

// migrations lists the migration objects: VMI, phase, created, and why a
// failed one failed.
func (r *realKubeVirt) migrations(ctx context.Context) string {
	l, err := r.dyn.Resource(vmimGVR).Namespace("vms").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, m := range l.Items {
		vmi, _, _ := unstructured.NestedString(m.Object, "spec", "vmiName")
		phase, _, _ := unstructured.NestedString(m.Object, "status", "phase")
		why, _, _ := unstructured.NestedString(m.Object, "status", "migrationState", "failureReason")
		out = append(out, fmt.Sprintf("%s %s %s %s %s", m.GetName(), vmi, phase, m.GetCreationTimestamp().UTC().Format(time.TimeOnly), why))
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}
