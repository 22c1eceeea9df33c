package simulator

import (
	"context"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var migrationGVR = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1alpha3", Resource: "virtualmachineinstancemigrations"}

// workloads is what virt-controller reads on a pass: every VMI, VM and
// migration (none when their CRDs are absent).
type workloads struct {
	vmis, vms, migrations []unstructured.Unstructured
}

func (s *Simulator) listWorkloads(ctx context.Context) (*workloads, error) {
	w := &workloads{}
	for _, l := range []struct {
		gvr schema.GroupVersionResource
		out *[]unstructured.Unstructured
	}{{vmiGVR, &w.vmis}, {vmGVR, &w.vms}, {migrationGVR, &w.migrations}} {
		list, err := s.dyn.Resource(l.gvr).Namespace("").List(ctx, metav1.ListOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, err
		default:
			*l.out = list.Items
		}
	}
	return w, nil
}

// vmi finds a VMI by namespace and name.
func (w *workloads) vmi(ns, name string) *unstructured.Unstructured {
	for i := range w.vmis {
		if w.vmis[i].GetNamespace() == ns && w.vmis[i].GetName() == name {
			return &w.vmis[i]
		}
	}
	return nil
}

// controllerUp reports whether virt-controller runs: its Deployment exists,
// is not being deleted, and has ready pods. Without it nothing acts on
// workloads: deleted VMIs, VMs and migrations keep their finalizers.
func (s *Simulator) controllerUp(ctx context.Context) (bool, error) {
	dep, err := s.kube.AppsV1().Deployments(s.opts.Namespace).Get(ctx, "virt-controller", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return dep.DeletionTimestamp == nil && dep.Status.ReadyReplicas > 0, nil
}

// syncController is virt-controller with virt-handler's part in it: the VMI
// lifecycle, the VM controller, the migration and evacuation controllers,
// and the workload updater. A pass runs at most every ControllerInterval.
func (s *Simulator) syncController(ctx context.Context, kv *unstructured.Unstructured) error {
	s.mu.Lock()
	wait := time.Until(s.lastControllerPass.Add(s.opts.ControllerInterval))
	if wait <= 0 {
		s.lastControllerPass = time.Now()
	}
	s.mu.Unlock()
	if wait > 0 {
		s.pokeAfter(wait)
		return nil
	}
	up, err := s.controllerUp(ctx)
	if err != nil || !up {
		return err
	}
	w, err := s.listWorkloads(ctx)
	if err != nil {
		return err
	}
	cfg := clusterConfigOf(kv)
	for _, step := range []func(context.Context, *workloads, clusterConfig) error{
		s.syncVMIDeletions, s.syncVMs, s.syncMigrations, s.syncEvacuations, s.syncUpdater,
	} {
		if err := step(ctx, w, cfg); err != nil {
			return err
		}
	}
	return nil
}

// clusterConfig is what virt-controller reads from the KubeVirt CR.
type clusterConfig struct {
	kv                  *unstructured.Unstructured // nil: no CR
	installed           string                     // observedKubeVirtVersion
	launcher            string                     // the installed virt-launcher
	generation          int64
	targetID            string
	methods             []string
	batchSize           int
	batchInterval       time.Duration
	perCluster, perNode int
	evictionStrategy    string
	updaterMayRun       bool // Deployed, and observed deployment = target
	hasWorkloadUpdater  bool
}

// Defaults of virt-config (docs/kubevirt.md, "Workload updates").
const (
	defaultBatchEvictionSize     = 10
	defaultBatchEvictionInterval = time.Minute
	defaultMigrationsPerCluster  = 5
	defaultMigrationsPerNode     = 2
)

func clusterConfigOf(kv *unstructured.Unstructured) clusterConfig {
	c := clusterConfig{kv: kv, batchSize: defaultBatchEvictionSize, batchInterval: defaultBatchEvictionInterval,
		perCluster: defaultMigrationsPerCluster, perNode: defaultMigrationsPerNode}
	if kv == nil {
		return c
	}
	o := kv.Object
	reg, _, _ := unstructured.NestedString(o, "status", "observedKubeVirtRegistry")
	c.installed, _, _ = unstructured.NestedString(o, "status", "observedKubeVirtVersion")
	c.launcher = launcherImage(reg, c.installed)
	c.generation = kv.GetGeneration()
	c.targetID, _, _ = unstructured.NestedString(o, "status", "targetDeploymentID")
	c.methods, _, _ = unstructured.NestedStringSlice(o, "spec", "workloadUpdateStrategy", "workloadUpdateMethods")
	if n, ok, _ := unstructured.NestedInt64(o, "spec", "workloadUpdateStrategy", "batchEvictionSize"); ok && n > 0 {
		c.batchSize = int(n)
	}
	if d, ok, _ := unstructured.NestedString(o, "spec", "workloadUpdateStrategy", "batchEvictionInterval"); ok {
		if v, err := time.ParseDuration(d); err == nil {
			c.batchInterval = v
		}
	}
	if n, ok, _ := unstructured.NestedInt64(o, "spec", "configuration", "migrations", "parallelMigrationsPerCluster"); ok && n > 0 {
		c.perCluster = int(n)
	}
	if n, ok, _ := unstructured.NestedInt64(o, "spec", "configuration", "migrations", "parallelOutboundMigrationsPerNode"); ok && n > 0 {
		c.perNode = int(n)
	}
	c.evictionStrategy, _, _ = unstructured.NestedString(o, "spec", "configuration", "evictionStrategy")
	phase, _, _ := unstructured.NestedString(o, "status", "phase")
	obsID, _, _ := unstructured.NestedString(o, "status", "observedDeploymentID")
	target, _, _ := unstructured.NestedString(o, "status", "targetKubeVirtVersion")
	c.updaterMayRun = kv.GetDeletionTimestamp() == nil && phase == "Deployed" && obsID == c.targetID && target == c.installed
	c.hasWorkloadUpdater = hasWorkloadUpdates(c.installed)
	return c
}

// syncVMIDeletions shuts deleted VMIs down: after VMIShutdownDelay their
// finalizers go (the VMI controller's, and the VM controller's on a VMI a
// VM owns).
func (s *Simulator) syncVMIDeletions(ctx context.Context, w *workloads, _ clusterConfig) error {
	s.mu.Lock()
	hold := s.faults.holdShutdown
	s.mu.Unlock()
	if hold {
		return nil
	}
	now := time.Now()
	for i := range w.vmis {
		vmi := &w.vmis[i]
		if vmi.GetDeletionTimestamp() == nil || len(vmi.GetFinalizers()) == 0 {
			continue
		}
		uid := string(vmi.GetUID())
		s.mu.Lock()
		seen, ok := s.shutdowns[uid]
		if !ok {
			s.shutdowns[uid], seen = now, now
		}
		s.mu.Unlock()
		if due := seen.Add(s.opts.VMIShutdownDelay); now.Before(due) {
			s.pokeAfter(due.Sub(now))
			continue
		}
		vmi.SetFinalizers(slices.DeleteFunc(vmi.GetFinalizers(), func(f string) bool {
			return f == VMIFinalizer || f == VMIFinalizerV2 || f == VMFinalizer
		}))
		if err := s.update(ctx, vmiGVR, vmi); err != nil {
			return err
		}
		s.mu.Lock()
		delete(s.shutdowns, uid)
		s.mu.Unlock()
	}
	return nil
}

// update writes an object back and takes the written version (so a second
// write in the same pass does not conflict with the first); a conflict or a
// vanished object means the next pass sees the news.
func (s *Simulator) update(ctx context.Context, gvr schema.GroupVersionResource, u *unstructured.Unstructured) error {
	got, err := s.dyn.Resource(gvr).Namespace(u.GetNamespace()).Update(ctx, u, metav1.UpdateOptions{})
	switch {
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		s.poke()
		return nil
	case err != nil:
		return err
	}
	*u = *got
	return nil
}

func (s *Simulator) deleteObject(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) error {
	err := s.dyn.Resource(gvr).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// vmiFinal: the guest is gone for good (phase Failed or Succeeded).
func vmiFinal(vmi *unstructured.Unstructured) bool {
	phase, _, _ := unstructured.NestedString(vmi.Object, "status", "phase")
	return phase == "Failed" || phase == "Succeeded"
}

func vmiRunning(vmi *unstructured.Unstructured) bool {
	phase, _, _ := unstructured.NestedString(vmi.Object, "status", "phase")
	return phase == "Running" && vmi.GetDeletionTimestamp() == nil
}

// syncVMs is the VM controller: a VM's run strategy decides whether a
// finished VMI is replaced (Always; RerunOnFailure after a failure) or
// left off (Manual; Halted stops it); a deleted VM goes once its VMI has.
func (s *Simulator) syncVMs(ctx context.Context, w *workloads, cfg clusterConfig) error {
	for i := range w.vms {
		vm := &w.vms[i]
		vmi := w.vmi(vm.GetNamespace(), vm.GetName())
		if vm.GetDeletionTimestamp() != nil {
			if err := s.finishVMDeletion(ctx, vm, vmi); err != nil {
				return err
			}
			continue
		}
		strategy, _, _ := unstructured.NestedString(vm.Object, "spec", "runStrategy")
		if err := s.runStrategy(ctx, vm, vmi, strategy, cfg); err != nil {
			return err
		}
	}
	return nil
}

func (s *Simulator) finishVMDeletion(ctx context.Context, vm, vmi *unstructured.Unstructured) error {
	if vmi != nil {
		if vmi.GetDeletionTimestamp() == nil {
			return s.deleteObject(ctx, vmiGVR, vmi.GetNamespace(), vmi.GetName())
		}
		return nil
	}
	if !slices.Contains(vm.GetFinalizers(), VMFinalizer) {
		return nil
	}
	vm.SetFinalizers(slices.DeleteFunc(vm.GetFinalizers(), func(f string) bool { return f == VMFinalizer }))
	return s.update(ctx, vmGVR, vm)
}

func (s *Simulator) runStrategy(ctx context.Context, vm, vmi *unstructured.Unstructured, strategy string, cfg clusterConfig) error {
	key := vm.GetNamespace() + "/" + vm.GetName()
	failed := vmi != nil && func() bool { p, _, _ := unstructured.NestedString(vmi.Object, "status", "phase"); return p == "Failed" }()
	restart := strategy == RunStrategyAlways && (vmi == nil || vmiFinal(vmi)) ||
		strategy == RunStrategyRerunOnFailure && failed
	switch {
	case strategy == RunStrategyHalted && vmi != nil && vmi.GetDeletionTimestamp() == nil:
		return s.deleteObject(ctx, vmiGVR, vmi.GetNamespace(), vmi.GetName())
	case !restart:
		return nil
	case vmi != nil && vmi.GetDeletionTimestamp() == nil:
		return s.deleteObject(ctx, vmiGVR, vmi.GetNamespace(), vmi.GetName()) // the next pass starts a new one
	case vmi != nil:
		return nil // still shutting down
	}
	meta, _, _ := unstructured.NestedMap(vm.Object, "spec", "template", "metadata")
	spec, _, _ := unstructured.NestedMap(vm.Object, "spec", "template", "spec")
	if _, err := s.createVMI(ctx, vm.GetNamespace(), vm.GetName(), meta, spec, cfg.launcher, cfg.installed, vm); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	kind, msg := VMIStarted, key+" started by its VM (runStrategy "+strategy+") on "+cfg.launcher
	if ran, _, _ := unstructured.NestedBool(vm.Object, "status", "created"); ran {
		kind, msg = VMIRestarted, key+" started again by its VM (runStrategy "+strategy+") on "+cfg.launcher
	}
	_ = unstructured.SetNestedField(vm.Object, true, "status", "created")
	if err := s.update(ctx, vmGVR, vm); err != nil {
		return err
	}
	s.mu.Lock()
	s.record(kind, "", cfg.installed, msg)
	s.mu.Unlock()
	return nil
}
