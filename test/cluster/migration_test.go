//go:build realnode

package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/testenv"
)

var vmimGVR = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachineinstancemigrations"}

// TestLiveMigrationOnRealNodes: the stretch of the real-node lane. Two
// nodes, each in its own network, PID and mount namespaces with its own
// kubelet, containerd and KubeVirt node state; kvgitops deployed from
// deploy/ installs v1.7.0 with workloadUpdateMethods [LiveMigrate]; a VMI
// runs under TCG on one node; the agent's hop to v1.8.4 waits (its
// workload wait, on the real virt-controller's labels) while KubeVirt's own
// workload updater live-migrates the VMI to a v1.8.4 launcher on the
// other node. The VMI must stay the same (UID), Running at every look,
// end on the other node in a v1.8.4 launcher, not outdated, in a new qemu
// process with the source's gone; the agent's status must count it moved.
func TestLiveMigrationOnRealNodes(t *testing.T) {
	t.Parallel() // each test has its own cluster
	ctx, c, builds := kubevirtCluster(t, 2, 15*time.Minute)
	rel := releases.NewServer(nodeTags)
	for _, tag := range nodeTags {
		m, err := releases.FromResourceGenerator(builds.Operators, tag)
		if err != nil {
			t.Fatal(err)
		}
		rel.Mutate(tag+"/kubevirt-operator.yaml", func([]byte) []byte { return m })
	}
	d := deploy(ctx, t, c, rel, migratingKubeVirt(nodeTags[0]), webhookKey)
	r := &realKubeVirt{t: t, c: c, kube: d.kube, dyn: dynamic.NewForConfigOrDie(c.Config), git: d.git}
	r.step(ctx, "install "+nodeTags[0], nodeTags[0], 8*time.Minute, d.created)

	objs := "apiVersion: v1\nkind: Namespace\nmetadata: {name: vms}\n---\n" +
		"apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: tiny, namespace: vms}\nspec:" + migratingGuestSpec
	if err := testenv.Apply(ctx, c.Config, []byte(objs)); err != nil {
		t.Fatal(err)
	}
	var g guest
	var before *unstructured.Unstructured
	if err := c.until(ctx, 3*time.Minute, "VMI tiny Running and LiveMigratable", func() bool {
		before, _ = r.dyn.Resource(vmiGVR).Namespace("vms").Get(ctx, "tiny", metav1.GetOptions{})
		g = guest{name: "tiny"}
		g.pid, g.startTime = qemuOf("vms", "tiny")
		phase := ""
		if before != nil {
			phase, _, _ = unstructured.NestedString(before.Object, "status", "phase")
		}
		return phase == "Running" && g.pid != 0 && condition(before, "LiveMigratable") && nodeOf(before) != ""
	}); err != nil {
		t.Fatalf("%v\n%s", err, r.report(ctx))
	}
	t.Logf("VMI tiny Running on %s (qemu %d), LiveMigratable", nodeOf(before), g.pid)

	watch := r.watchPhases(ctx, []guest{g})
	r.commit(migratingKubeVirt(nodeTags[1]), "upgrade")
	hop := time.Now()
	s := r.waitStatus(ctx, 10*time.Minute, "upgrade to "+nodeTags[1]+", its VMI moved", func(s map[string]any) bool {
		observed, _ := s["observed"].(map[string]any)
		return s["reason"] == "UpToDate" && observed["version"] == nodeTags[1]
	})
	phases := watch()
	t.Logf("hop with its VMI live-migrated: the agent's status says done %s after the commit; workloads %v", time.Since(hop).Round(time.Second), s["workloads"])
	if w, _ := s["workloads"].(map[string]any); fmt.Sprint(w["moved"]) != "1" {
		t.Errorf("the status file's workloads after the hop: %v, want 1 moved", s["workloads"])
	}
	if err := r.componentsAt(ctx, nodeTags[1]); err != nil {
		t.Fatalf("%v\n%s", err, r.report(ctx))
	}
	r.moved(ctx, g, before, phases[g.name])
}

// migratingGuestSpec is guestSpec with a CPU limit. With one, virt-handler
// does not ask libvirt for a parallel (multifd) migration, which qemu 7.2
// here (Debian 12's; KubeVirt's images carry 9–10) breaks at random: the
// target's qemu fails "multifd: received packet magic 5145564d expected
// 11223344" (the main channel's connection taken for a multifd one), or
// the source's "migration out" job hangs with the guest paused.
var migratingGuestSpec = strings.Replace(guestSpec, "resources: {requests: {memory: 64Mi}}", "resources: {requests: {memory: 64Mi}, limits: {cpu: 500m}}", 1)

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
	pid, start := qemuOf("vms", g.name)
	if pid == g.pid && start == g.startTime {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", g.pid))
	return err == nil && strings.Contains(string(b), "qemu-system")
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
