package simulator

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// What KubeVirt puts on its workloads (docs/kubevirt.md, "Workload updates").
const (
	// OutdatedLabel marks a VMI whose virt-launcher is older than the
	// install (virt-controller, v0.39+).
	OutdatedLabel = "kubevirt.io/outdatedLauncherImage"
	// VMIFinalizer holds a deleted VMI until its domain has shut down; from
	// v1.7.0-alpha.0 virt-controller writes VMIFinalizerV2 instead (and
	// removes either).
	VMIFinalizer   = "foregroundDeleteVirtualMachine"
	VMIFinalizerV2 = "kubevirt.io/foregroundDeleteVirtualMachine"
	// VMFinalizer is the VM controller's, on VMs and the VMIs they own.
	VMFinalizer = "kubevirt.io/virtualMachineControllerFinalize"
	// MigrationFinalizer is the migration controller's, on migrations.
	MigrationFinalizer = "kubevirt.io/migrationJobFinalize"
	// WorkloadUpdateAnnotation marks the migrations the workload updater
	// creates.
	WorkloadUpdateAnnotation = "kubevirt.io/workloadUpdateMigration"
	// notMigratableAnnotation carries a test's reason a VMI cannot live-migrate
	// (a stand-in for an RWO volume, a CD-ROM, node pinning…); host devices
	// are read from the spec as KubeVirt does.
	notMigratableAnnotation = "simulator.kvgitops.io/not-migratable"
)

// Run strategies of a VM.
const (
	RunStrategyAlways         = "Always"
	RunStrategyRerunOnFailure = "RerunOnFailure"
	RunStrategyManual         = "Manual"
	RunStrategyHalted         = "Halted"
)

// Eviction strategies (a VMI's spec.evictionStrategy, or the cluster's
// spec.configuration.evictionStrategy).
const (
	EvictionNone                  = "None"
	EvictionLiveMigrate           = "LiveMigrate"
	EvictionLiveMigrateIfPossible = "LiveMigrateIfPossible"
	EvictionExternal              = "External"
)

func launcherImage(registry, version string) string { return registry + "/virt-launcher:" + version }

// vmiShape is what a test says about a VMI it creates.
type vmiShape struct {
	notMigratable string // reason; "" = migratable
	hostDevice    bool
	eviction      string
	node          string
	labels        map[string]string
}

// VMIOption shapes a VMI (or a VM's template).
type VMIOption func(*vmiShape)

// NotMigratable makes the VMI's LiveMigratable condition False with reason
// (DisksNotLiveMigratable, for an RWO volume, is the common one).
func NotMigratable(reason string) VMIOption {
	return func(v *vmiShape) { v.notMigratable = reason }
}

// WithHostDevice gives the VMI a host device: not live-migratable
// (HostDeviceNotLiveMigratable), as KubeVirt reads it from the spec.
func WithHostDevice() VMIOption { return func(v *vmiShape) { v.hostDevice = true } }

// WithEvictionStrategy sets the VMI's spec.evictionStrategy.
func WithEvictionStrategy(s string) VMIOption { return func(v *vmiShape) { v.eviction = s } }

// OnNode places the VMI on node (default: one of node-1…node-3 by name).
func OnNode(node string) VMIOption { return func(v *vmiShape) { v.node = node } }

// WithLabels labels the VMI.
func WithLabels(l map[string]string) VMIOption { return func(v *vmiShape) { v.labels = l } }

func shapeOf(name string, opts []VMIOption) vmiShape {
	var v vmiShape
	for _, o := range opts {
		o(&v)
	}
	if v.node == "" {
		h := fnv.New32a()
		h.Write([]byte(name))
		v.node = "node-" + strconv.Itoa(int(h.Sum32()%3)+1)
	}
	return v
}

// template is the VMI's metadata and spec for a shape.
func (v vmiShape) template() (map[string]any, map[string]any) {
	meta := map[string]any{}
	if len(v.labels) > 0 {
		l := map[string]any{}
		for k, val := range v.labels {
			l[k] = val
		}
		meta["labels"] = l
	}
	if v.notMigratable != "" {
		meta["annotations"] = map[string]any{notMigratableAnnotation: v.notMigratable}
	}
	devices := map[string]any{}
	if v.hostDevice {
		devices["hostDevices"] = []any{map[string]any{"name": "gpu", "deviceName": "nvidia.com/GP102GL"}}
	}
	spec := map[string]any{"domain": map[string]any{"devices": devices}, "nodeSelector": map[string]any{"kubernetes.io/hostname": v.node}}
	if v.eviction != "" {
		spec["evictionStrategy"] = v.eviction
	}
	return meta, spec
}

// CreateVMI creates a running standalone VMI on the current install's
// virt-launcher, as a user, virt-controller and virt-handler together
// would. The VMI CRD exists once KubeVirt is installed.
func (s *Simulator) CreateVMI(ctx context.Context, ns, name string, opts ...VMIOption) (types.UID, error) {
	launcher, op := s.currentLauncher(ctx)
	meta, spec := shapeOf(name, opts).template()
	return s.createVMI(ctx, ns, name, meta, spec, launcher, op, nil)
}

// CreateVMIs creates n standalone VMIs prefix-0 … prefix-(n-1), 16 at a
// time (for tests with thousands).
func (s *Simulator) CreateVMIs(ctx context.Context, ns, prefix string, n int, opts ...VMIOption) error {
	launcher, op := s.currentLauncher(ctx)
	sem := make(chan struct{}, 16)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			name := fmt.Sprintf("%s-%d", prefix, i)
			meta, spec := shapeOf(name, opts).template()
			if _, err := s.createVMI(ctx, ns, name, meta, spec, launcher, op, nil); err != nil {
				mu.Lock()
				first = cmpOr(first, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// CreateVM creates a VM with runStrategy; unless Halted it runs at once (a
// VMI owned by it), as the VM controller would start it.
func (s *Simulator) CreateVM(ctx context.Context, ns, name, runStrategy string, opts ...VMIOption) (types.UID, error) {
	meta, spec := shapeOf(name, opts).template()
	vm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1alpha3", "kind": "VirtualMachine",
		"metadata": map[string]any{"name": name, "namespace": ns, "finalizers": []any{VMFinalizer}},
		"spec":     map[string]any{"runStrategy": runStrategy, "template": map[string]any{"metadata": meta, "spec": spec}},
	}}
	got, err := s.dyn.Resource(vmGVR).Namespace(ns).Create(ctx, vm, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create VM %s/%s: %w", ns, name, err)
	}
	if runStrategy == RunStrategyHalted {
		return got.GetUID(), nil
	}
	launcher, op := s.currentLauncher(ctx)
	uid, err := s.createVMI(ctx, ns, name, meta, spec, launcher, op, got)
	if err == nil {
		_ = unstructured.SetNestedField(got.Object, true, "status", "created")
		_, err = s.dyn.Resource(vmGVR).Namespace(ns).Update(ctx, got, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) { // the VM controller wrote it
			err = nil
		}
	}
	if apierrors.IsAlreadyExists(err) { // the VM controller was first
		vmi, err := s.dyn.Resource(vmiGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return vmi.GetUID(), nil
	}
	return uid, err
}

// currentLauncher is the virt-launcher a VMI started now gets, and the
// version of the install that starts it.
func (s *Simulator) currentLauncher(ctx context.Context) (string, string) {
	kvs, err := s.dyn.Resource(kubevirtGVR).Namespace(s.opts.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil || len(kvs.Items) == 0 {
		return "", ""
	}
	reg, _, _ := unstructured.NestedString(kvs.Items[0].Object, "status", "observedKubeVirtRegistry")
	ver, _, _ := unstructured.NestedString(kvs.Items[0].Object, "status", "observedKubeVirtVersion")
	return launcherImage(reg, ver), ver
}

// createVMI creates a Running VMI from a template: the VMI controller's
// finalizer (named per version), the VM controller's when a VM owns it,
// the LiveMigratable condition as virt-controller computes it.
func (s *Simulator) createVMI(ctx context.Context, ns, name string, meta, spec map[string]any, launcher, version string, owner *unstructured.Unstructured) (types.UID, error) {
	fin := VMIFinalizer
	if atLeast(version, "v1.7.0-alpha.0") {
		fin = VMIFinalizerV2
	}
	m := deepCopyMap(meta)
	m["name"], m["namespace"] = name, ns
	finalizers := []any{fin}
	if owner != nil {
		finalizers = append(finalizers, VMFinalizer)
		m["ownerReferences"] = []any{map[string]any{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": owner.GetName(),
			"uid": string(owner.GetUID()), "controller": true, "blockOwnerDeletion": true}}
	}
	m["finalizers"] = finalizers
	sp := deepCopyMap(spec)
	node, _, _ := unstructured.NestedString(sp, "nodeSelector", "kubernetes.io/hostname")
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1alpha3", "kind": "VirtualMachineInstance",
		"metadata": m, "spec": sp,
		"status": map[string]any{"phase": "Running", "nodeName": node, "launcherContainerImageVersion": launcher,
			"conditions": []any{map[string]any{"type": "Ready", "status": "True"}, migratableCondition(m, sp)}},
	}}
	got, err := s.dyn.Resource(vmiGVR).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create VMI %s/%s: %w", ns, name, err)
	}
	return got.GetUID(), nil
}

// migratableCondition is LiveMigratable as virt-controller sets it: False
// for host devices (and for what a test names), True otherwise.
func migratableCondition(meta, spec map[string]any) map[string]any {
	reason := ""
	if devs, _, _ := unstructured.NestedSlice(spec, "domain", "devices", "hostDevices"); len(devs) > 0 {
		reason = "HostDeviceNotLiveMigratable"
	}
	if ann, _, _ := unstructured.NestedString(meta, "annotations", notMigratableAnnotation); ann != "" {
		reason = ann
	}
	if reason == "" {
		return map[string]any{"type": "LiveMigratable", "status": "True"}
	}
	return map[string]any{"type": "LiveMigratable", "status": "False", "reason": reason,
		"message": "the VMI cannot be live-migrated: " + reason}
}

func deepCopyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return runtime.DeepCopyJSON(m)
}

// disruptVMIs restarts the VMIs a fault names when a hop rolls out: a new
// UID on the same launcher, as if the update had restarted the guest.
func (s *Simulator) disruptVMIs(ctx context.Context, h *hop) error {
	s.mu.Lock()
	targets := s.faults.disrupt
	s.faults.disrupt = nil
	s.mu.Unlock()
	for _, t := range targets {
		ns, name, _ := strings.Cut(t, "/")
		r := s.dyn.Resource(vmiGVR).Namespace(ns)
		vmi, err := r.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		launcher, _, _ := unstructured.NestedString(vmi.Object, "status", "launcherContainerImageVersion")
		meta := map[string]any{"labels": toAnyMap(vmi.GetLabels()), "annotations": toAnyMap(vmi.GetAnnotations())}
		spec, _, _ := unstructured.NestedMap(vmi.Object, "spec")
		vmi.SetFinalizers(nil) // virt-handler shut the domain down at once
		if _, err := r.Update(ctx, vmi, metav1.UpdateOptions{}); err != nil {
			return err
		}
		if err := r.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if _, err := s.createVMI(ctx, ns, name, meta, spec, launcher, h.from, nil); err != nil {
			return err
		}
		s.mu.Lock()
		s.record(VMIDisrupted, h.from, h.to, "VMI "+t+" restarted during the update")
		s.mu.Unlock()
	}
	return nil
}

func toAnyMap(m map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}
