package simulator_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/testenv"
)

var (
	vmGVR  = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1alpha3", Resource: "virtualmachines"}
	migGVR = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1alpha3", Resource: "virtualmachineinstancemigrations"}
)

const newLauncher = "quay.io/kubevirt/virt-launcher:v1.8.4"

// vmiState is one VMI as a test reads it.
type vmiState struct {
	uid      types.UID
	phase    string
	launcher string
	outdated bool
	mark     string // status.evacuationNodeName
}

func (h *harness) vmiStates(t *testing.T) map[string]vmiState {
	t.Helper()
	list, err := h.dyn.Resource(vmiGVR).Namespace("default").List(h.ctx(t), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]vmiState{}
	for _, v := range list.Items {
		_, outdated := v.GetLabels()[simulator.OutdatedLabel]
		out[v.GetName()] = vmiState{v.GetUID(), str(&v, "status", "phase"), str(&v, "status", "launcherContainerImageVersion"), outdated,
			str(&v, "status", "evacuationNodeName")}
	}
	return out
}

// outdatedCount is the CR's count and whether it is there at all.
func (h *harness) outdatedCount(t *testing.T) (int64, bool) {
	t.Helper()
	n, ok, _ := unstructured.NestedInt64(h.kv(t).Object, "status", "outdatedVirtualMachineInstanceWorkloads")
	return n, ok
}

func (h *harness) migrationsFor(t *testing.T, vmi string) int {
	t.Helper()
	list, err := h.dyn.Resource(migGVR).Namespace("default").List(h.ctx(t), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range list.Items {
		if str(&m, "spec", "vmiName") == vmi {
			n++
		}
	}
	return n
}

// upgradeWith installs v1.7.4 with spec, runs create to make the
// workloads, then hops to v1.8.4 and waits for it.
func (h *harness) upgradeWith(t *testing.T, spec map[string]any, create func()) {
	t.Helper()
	h.install(t, "v1.7.4", spec)
	create()
	h.applyOperator(t, "v1.8.4")
	h.wait(t, simulator.Has(simulator.HopCompleted, "v1.8.4"))
}

func strategy(methods ...any) map[string]any {
	return map[string]any{"workloadUpdateStrategy": map[string]any{"workloadUpdateMethods": methods, "batchEvictionInterval": "200ms"}}
}

// TestWhatTheWorkloadUpdaterDoesToEachKindOfVMI: per update method,
// eviction strategy, migratability and owner, what happens to a VMI on the
// old virt-launcher after a hop — as virt-controller's workload updater and
// virt-api's eviction admitter decide it (docs/kubevirt.md, "Workload
// updates").
func TestWhatTheWorkloadUpdaterDoesToEachKindOfVMI(t *testing.T) {
	type want struct {
		phase      string // "" = Running
		moved      bool   // on the new launcher
		newUID     bool
		marked     bool
		outdated   bool // still counted outdated
		transition simulator.Kind
	}
	for _, tt := range []struct {
		name string
		spec map[string]any
		vm   string // run strategy; "" = a standalone VMI
		opts []simulator.VMIOption
		want want
	}{
		{"LiveMigrate moves a migratable VMI (same UID)", strategy("LiveMigrate"), "", nil,
			want{moved: true, transition: simulator.VMIMigrated}},
		{"LiveMigrate never touches a non-migratable VMI", strategy("LiveMigrate"), "", []simulator.VMIOption{simulator.NotMigratable("DisksNotLiveMigratable")},
			want{outdated: true}},
		{"LiveMigrate never touches a VMI with a host device", strategy("LiveMigrate"), "", []simulator.VMIOption{simulator.WithHostDevice()},
			want{outdated: true}},
		{"no method leaves it outdated", nil, "", nil, want{outdated: true}},
		{"Evict with no eviction strategy shuts a standalone VMI down for good", strategy("Evict"), "", nil,
			want{phase: "Failed", transition: simulator.VMIShutDown}},
		{"Evict with no eviction strategy restarts a VM that runs Always (new UID)", strategy("Evict"), simulator.RunStrategyAlways, nil,
			want{moved: true, newUID: true, transition: simulator.VMIRestarted}},
		{"Evict with no eviction strategy leaves a Manual VM off", strategy("Evict"), simulator.RunStrategyManual, nil,
			want{phase: "Failed", transition: simulator.VMIShutDown}},
		{"Evict under eviction strategy LiveMigrate evacuates by live migration", strategy("Evict"), "", []simulator.VMIOption{simulator.WithEvictionStrategy("LiveMigrate")},
			want{moved: true, transition: simulator.VMIMigrated}},
		{"Evict under LiveMigrate on a non-migratable VMI is denied, every time", strategy("Evict"), "",
			[]simulator.VMIOption{simulator.WithEvictionStrategy("LiveMigrate"), simulator.NotMigratable("DisksNotLiveMigratable")},
			want{outdated: true, transition: simulator.EvictionDenied}},
		{"Evict under LiveMigrateIfPossible shuts a non-migratable VMI down", strategy("Evict"), "",
			[]simulator.VMIOption{simulator.WithEvictionStrategy("LiveMigrateIfPossible"), simulator.NotMigratable("DisksNotLiveMigratable")},
			want{phase: "Failed", transition: simulator.VMIShutDown}},
		{"Evict under External only marks the VMI", strategy("Evict"), "", []simulator.VMIOption{simulator.WithEvictionStrategy("External")},
			want{outdated: true, marked: true}},
		{"LiveMigrate and Evict: a non-migratable VMI is evicted", strategy("LiveMigrate", "Evict"), "", []simulator.VMIOption{simulator.NotMigratable("DisksNotLiveMigratable")},
			want{phase: "Failed", transition: simulator.VMIShutDown}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t)
			var uid types.UID
			h.upgradeWith(t, tt.spec, func() {
				var err error
				if tt.vm == "" {
					uid, err = h.sim.CreateVMI(h.ctx(t), "default", "vma", tt.opts...)
				} else {
					_, err = h.sim.CreateVM(h.ctx(t), "default", "vma", tt.vm, tt.opts...)
					uid = h.vmiStates(t)["vma"].uid
				}
				if err != nil {
					t.Fatal(err)
				}
			})
			if tt.want.transition != "" {
				h.wait(t, simulator.Has(tt.want.transition, ""))
			}
			settle := func() bool {
				st, ok := h.vmiStates(t)["vma"]
				n, has := h.outdatedCount(t)
				return ok && (st.phase == "Running") == (tt.want.phase == "") && (st.launcher == newLauncher) == tt.want.moved &&
					has && (n == 1) == tt.want.outdated && (st.mark != "") == tt.want.marked
			}
			eventually(t, settle, "the VMI settles")
			time.Sleep(500 * time.Millisecond) // two more batches and several passes: nothing else happens
			if !settle() {
				t.Fatalf("the VMI moved on: %+v, transitions %v", h.vmiStates(t)["vma"], kinds(h.sim.Transitions()))
			}
			st := h.vmiStates(t)["vma"]
			if (st.uid != uid) != tt.want.newUID {
				t.Errorf("UID %s, was %s: want new %t", st.uid, uid, tt.want.newUID)
			}
			if tt.want.outdated && tt.want.transition == "" && !tt.want.marked && h.migrationsFor(t, "vma") != 0 {
				t.Errorf("a migration was created for a VMI the updater must leave alone")
			}
			h.noViolations(t)
		})
	}
}

// TestMigrationsAreThrottled: at most parallelMigrationsPerCluster (5)
// migrations run at once and at most parallelOutboundMigrationsPerNode (2)
// leave one node; a failing one is retried.
func TestMigrationsAreThrottled(t *testing.T) {
	h := startWith(t, simulator.Options{MigrationDelay: 150 * time.Millisecond})
	h.upgradeWith(t, strategy("LiveMigrate"), func() {
		for i, node := range []string{"node-1", "node-2", "node-3", "node-4"} {
			if err := h.sim.CreateVMIs(h.ctx(t), "default", "n"+string(rune('1'+i)), 4, simulator.OnNode(node)); err != nil {
				t.Fatal(err)
			}
		}
		h.sim.FailMigrations("default/n1-0")
	})
	eventually(t, func() bool { n, ok := h.outdatedCount(t); return ok && n == 1 }, "every VMI but the failing one moved")
	h.wait(t, func(ts []simulator.Transition) bool {
		n := 0
		for _, tr := range ts {
			if tr.Kind == simulator.MigrationFailed {
				n++
			}
		}
		return n >= 2
	})
	running, byNode, most, mostNode := 0, map[string]int{}, 0, 0
	from := map[string]string{} // VMI → the node its running migration leaves
	for _, tr := range h.sim.Transitions() {
		key, rest, _ := strings.Cut(tr.Message, " ")
		switch tr.Kind {
		case simulator.MigrationStarted: // "ns/name from node"
			from[key] = rest[len("from "):]
			running++
			byNode[from[key]]++
			most, mostNode = max(most, running), max(mostNode, byNode[from[key]])
		case simulator.VMIMigrated, simulator.MigrationFailed:
			running--
			byNode[from[key]]--
		default: // the rest says nothing of migrations in flight
		}
	}
	if most > 5 || most < 4 {
		t.Errorf("%d migrations ran at once; the cluster allows 5 (and 16 waited)", most)
	}
	if mostNode > 2 {
		t.Errorf("%d migrations left one node at once; a node allows 2", mostNode)
	}
	h.noViolations(t)
}

// TestEvictionsComeInBatches: 25 VMs under Evict (no eviction strategy,
// runStrategy Always) with batchEvictionSize 10 every 400ms are shut down
// and restarted ten at a time, the batches at least an interval apart.
func TestEvictionsComeInBatches(t *testing.T) {
	h := start(t)
	spec := map[string]any{"workloadUpdateStrategy": map[string]any{"workloadUpdateMethods": []any{"Evict"}, "batchEvictionSize": int64(10), "batchEvictionInterval": "400ms"}}
	h.upgradeWith(t, spec, func() {
		for i := range 25 {
			if _, err := h.sim.CreateVM(h.ctx(t), "default", "vm-"+string(rune('a'+i)), simulator.RunStrategyAlways); err != nil {
				t.Fatal(err)
			}
		}
	})
	eventually(t, func() bool { return h.sim.Count(simulator.VMIRestarted) == 25 }, "every VM restarted")
	var batches []time.Time
	var perBatch []int
	for _, tr := range h.sim.Transitions() {
		switch tr.Kind {
		case simulator.EvictionBatch: // recorded as it starts
			batches, perBatch = append(batches, tr.At), append(perBatch, 0)
		case simulator.VMIShutDown:
			perBatch[len(perBatch)-1]++
		default: // the rest says nothing of batches
		}
	}
	if !slices.Equal(perBatch, []int{10, 10, 5}) {
		t.Fatalf("shut down per batch %v, want 10, 10, 5", perBatch)
	}
	for i := 1; i < len(batches); i++ {
		if gap := batches[i].Sub(batches[i-1]); gap < 400*time.Millisecond {
			t.Errorf("batch %d came %s after the previous one; the interval is 400ms", i, gap)
		}
	}
	h.noViolations(t)
}

// TestAChangeMidMigrationKillsTheGuest (kubevirt#18720): a spec change of
// the CR while a workload-update migration runs kills the VMI; the
// simulator records it as a violation.
func TestAChangeMidMigrationKillsTheGuest(t *testing.T) {
	h := startWith(t, simulator.Options{MigrationDelay: 2 * time.Second})
	h.upgradeWith(t, strategy("LiveMigrate"), func() {
		if _, err := h.sim.CreateVMI(h.ctx(t), "default", "vma"); err != nil {
			t.Fatal(err)
		}
	})
	h.wait(t, simulator.Has(simulator.MigrationStarted, ""))
	patch := []byte(`{"spec":{"configuration":{"developerConfiguration":{"featureGates":["Snapshot"]}}}}`)
	if _, err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Patch(h.ctx(t), "kubevirt", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	h.wait(t, simulator.Has(simulator.MigrationInterrupted, ""))
	if st := h.vmiStates(t)["vma"]; st.phase != "Failed" {
		t.Errorf("the VMI is %s after its migration was interrupted", st.phase)
	}
	if v := h.sim.Violations(); len(v) != 1 || v[0].Kind != simulator.MigrationInterrupted {
		t.Errorf("violations %+v, want the interrupted migration", v)
	}
}

// TestWorkloadFinalizersStayWithoutVirtController: once virt-controller is
// gone nothing removes the VMIs', VMs' or migrations' finalizers.
func TestWorkloadFinalizersStayWithoutVirtController(t *testing.T) {
	h := start(t)
	h.install(t, "v1.7.4", strategy("LiveMigrate"))
	if _, err := h.sim.CreateVM(h.ctx(t), "default", "vma", simulator.RunStrategyAlways); err != nil {
		t.Fatal(err)
	}
	if err := h.kube.AppsV1().Deployments("kubevirt").Delete(h.ctx(t), "virt-controller", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, gvr := range []schema.GroupVersionResource{vmiGVR, vmGVR} {
		if err := h.dyn.Resource(gvr).Namespace("default").Delete(h.ctx(t), "vma", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, gvr := range []schema.GroupVersionResource{vmiGVR, vmGVR} {
		u, err := h.dyn.Resource(gvr).Namespace("default").Get(h.ctx(t), "vma", metav1.GetOptions{})
		if err != nil || u.GetDeletionTimestamp() == nil || len(u.GetFinalizers()) == 0 {
			t.Errorf("%s vma: %v, finalizers %v: want Terminating on its finalizers", gvr.Resource, err, u.GetFinalizers())
			continue
		}
		want := simulator.VMFinalizer
		if gvr == vmiGVR {
			want = simulator.VMIFinalizerV2 // created by v1.7.4's virt-controller
		}
		if !slices.Contains(u.GetFinalizers(), want) {
			t.Errorf("%s vma holds %v, want %s", gvr.Resource, u.GetFinalizers(), want)
		}
	}
}

// TestTheOutdatedCount: absent until the updater's first pass, Running
// VMIs only.
func TestTheOutdatedCount(t *testing.T) {
	h := start(t)
	h.install(t, "v1.7.4", nil)
	if _, err := h.sim.CreateVMI(h.ctx(t), "default", "vma"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sim.CreateVM(h.ctx(t), "default", "vmb", simulator.RunStrategyManual); err != nil {
		t.Fatal(err)
	}
	h.sim.StallHop("v1.8.4")
	h.applyOperator(t, "v1.8.4")
	h.wait(t, simulator.Has(simulator.HopStarted, "v1.8.4"))
	time.Sleep(300 * time.Millisecond)
	if n, ok := h.outdatedCount(t); ok && n != 0 {
		t.Errorf("outdated count %d while the hop runs; the updater has nothing to say yet", n)
	}
	// vmb's guest stops: Succeeded, no longer counted.
	vmb, err := h.dyn.Resource(vmiGVR).Namespace("default").Get(h.ctx(t), "vmb", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedField(vmb.Object, "Succeeded", "status", "phase")
	if _, err := h.dyn.Resource(vmiGVR).Namespace("default").Update(h.ctx(t), vmb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.sim.ClearFaults()
	h.wait(t, simulator.Has(simulator.HopCompleted, "v1.8.4"))
	eventually(t, func() bool { n, ok := h.outdatedCount(t); return ok && n == 1 }, "one Running VMI counted")
}

// TestARenamedOperatorImageInstallsNothing: virt-operator reads its
// registry and version from its image's name, which must end in
// virt-operator; a mirror that renames it gets an empty registry, so the
// component images cannot be pulled and the install never completes.
func TestARenamedOperatorImageInstallsNothing(t *testing.T) {
	h := start(t)
	renamed := bytes.ReplaceAll(releases.AsStoredSince122("v1.8.4"), []byte("quay.io/kubevirt/virt-operator:v1.8.4"), []byte("registry.example.com/mirror/kv-operator:v1.8.4"))
	if err := testenv.Apply(h.ctx(t), h.cfg, renamed); err != nil {
		t.Fatal(err)
	}
	objs, err := testenv.Decode(releases.CRManifest("v1.8.4"))
	if err != nil {
		t.Fatal(err)
	}
	gvr := kvGVR
	gvr.Version = objs[0].GroupVersionKind().Version
	for deadline := time.Now().Add(waitFor); ; time.Sleep(50 * time.Millisecond) {
		_, err := h.dyn.Resource(gvr).Namespace("kubevirt").Create(h.ctx(t), objs[0], metav1.CreateOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("create the CR: %v; transitions %v", err, kinds(h.sim.Transitions()))
		}
	}
	h.wait(t, simulator.Has(simulator.ImagePullFailed, "v1.8.4"))
	time.Sleep(time.Second)
	if kv := h.kv(t); str(kv, "status", "targetKubeVirtRegistry") != "" || str(kv, "status", "observedKubeVirtVersion") != "" || h.sim.Count(simulator.HopCompleted) != 0 {
		t.Errorf("target registry %q observed %q, hops %v: want no registry and nothing installed",
			str(kv, "status", "targetKubeVirtRegistry"), str(kv, "status", "observedKubeVirtVersion"), h.sim.CompletedHops())
	}
}

// TestSwappingABuggyOperatorUnderAPinnedCRRedeploys: from v0.58.1 through
// v1.7.0-rc.0 the install strategy's id hashes the operator's own image, so
// a new operator under a CR pinned to a tag is a new target: the same
// version redeployed with the new operator's manifests (kubevirt#16050).
func TestSwappingABuggyOperatorUnderAPinnedCRRedeploys(t *testing.T) {
	h := start(t)
	h.install(t, "v1.5.3", map[string]any{"imageTag": "v1.5.3"})
	h.applyOperator(t, "v1.6.6")
	h.wait(t, simulator.Has(simulator.MixedInstall, "v1.5.3"))
	h.wait(t, func(ts []simulator.Transition) bool {
		return len(slices.DeleteFunc(kinds(ts), func(k simulator.Kind) bool { return k != simulator.HopCompleted })) == 2
	})
	if hops := h.sim.CompletedHops(); hops[1] != (simulator.Hop{From: "v1.5.3", To: "v1.5.3"}) {
		t.Errorf("hops %v, want a v1.5.3 → v1.5.3 redeploy", hops)
	}
}
