package executor

import (
	"context"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/kvgitops/kvgitops/planner"
)

// VMI is one virtual machine instance, as the workload checks read it.
type VMI struct {
	Namespace, Name, UID, Phase string
	Outdated                    bool   // virt-controller labelled it: its virt-launcher is older than the install
	Launcher                    string // status.launcherContainerImageVersion
	Deleting                    bool
	Finalizers                  []string
	Labels                      map[string]string
	Migratable                  bool   // condition LiveMigratable=True
	NotMigratableReason         string // its reason when False
	EvictionStrategy            string // spec.evictionStrategy
	Owner                       string // the VM that owns it ("" standalone)
	RunStrategy                 string // that VM's
	Migrating                   bool   // a live migration started and has not ended
	APIVersion                  string // as read (kubevirt.io/v1 or v1alpha3)
}

// VM is one virtual machine (what teardown names).
type VM struct {
	Namespace, Name, RunStrategy string
	Deleting                     bool
	Finalizers                   []string
}

// Migration is one VirtualMachineInstanceMigration.
type Migration struct {
	Namespace, Name, VMI, Phase string
	Deleting                    bool
	Finalizers                  []string
}

// Finished reports whether the migration ended (Succeeded or Failed).
func (m Migration) Finished() bool { return m.Phase == "Succeeded" || m.Phase == "Failed" }

// OutdatedLabel is what virt-controller puts on a VMI whose virt-launcher is
// older than the install (docs/kubevirt.md, "Workload updates").
const OutdatedLabel = "kubevirt.io/outdatedLauncherImage"

func (v VMI) key() string { return v.Namespace + "/" + v.Name }

// Running: the guest runs and is not being deleted.
func (v VMI) Running() bool { return v.Phase == "Running" && !v.Deleting }

// plannerVMI is what planning needs of a VMI.
func (v VMI) plannerVMI() planner.VMI {
	return planner.VMI{Namespace: v.Namespace, Name: v.Name, Labels: v.Labels, Migratable: v.Migratable,
		NotMigratableReason: v.NotMigratableReason, EvictionStrategy: v.EvictionStrategy, RunStrategy: v.RunStrategy}
}

// Workloads are the VMIs, VMs and migrations in the cluster.
type Workloads struct {
	VMIs       []VMI
	VMs        []VM
	Migrations []Migration
}

// InFlight names (namespace/vmi) the migrations that have not finished.
func (w *Workloads) InFlight() []string {
	var out []string
	for _, m := range w.Migrations {
		if !m.Finished() && !m.Deleting {
			out = append(out, m.Namespace+"/"+m.VMI)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// listPage is how many objects one list request returns: a cluster with
// thousands of VMIs is read in pages, each decoded and dropped.
const listPage = 500

// observeWorkloads reads every VMI, VM and migration (an absent CRD means
// none), page by page, keeping what the checks need.
func (e *Executor) observeWorkloads(ctx context.Context) (*Workloads, error) {
	w := &Workloads{}
	runStrategies := map[string]string{}
	err := e.eachKubeVirtObject(ctx, "virtualmachines", func(u *unstructured.Unstructured) {
		vm := VM{Namespace: u.GetNamespace(), Name: u.GetName(), RunStrategy: runStrategy(u),
			Deleting: u.GetDeletionTimestamp() != nil, Finalizers: u.GetFinalizers()}
		w.VMs = append(w.VMs, vm)
		runStrategies[vm.Namespace+"/"+vm.Name] = vm.RunStrategy
	})
	if err != nil {
		return nil, err
	}
	err = e.eachKubeVirtObject(ctx, "virtualmachineinstances", func(u *unstructured.Unstructured) {
		v := vmiOf(u)
		if v.Owner != "" {
			v.RunStrategy = runStrategies[v.Namespace+"/"+v.Owner]
		}
		w.VMIs = append(w.VMIs, v)
	})
	if err != nil {
		return nil, err
	}
	err = e.eachKubeVirtObject(ctx, "virtualmachineinstancemigrations", func(u *unstructured.Unstructured) {
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		vmi, _, _ := unstructured.NestedString(u.Object, "spec", "vmiName")
		w.Migrations = append(w.Migrations, Migration{Namespace: u.GetNamespace(), Name: u.GetName(), VMI: vmi, Phase: phase,
			Deleting: u.GetDeletionTimestamp() != nil, Finalizers: u.GetFinalizers()})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(w.VMIs, func(a, b VMI) int { return strings.Compare(a.key(), b.key()) })
	return w, nil
}

// runStrategy is a VM's spec.runStrategy, or what the older spec.running
// means.
func runStrategy(u *unstructured.Unstructured) string {
	if s, ok, _ := unstructured.NestedString(u.Object, "spec", "runStrategy"); ok {
		return s
	}
	if running, ok, _ := unstructured.NestedBool(u.Object, "spec", "running"); ok && running {
		return "Always"
	}
	return "Halted"
}

func vmiOf(u *unstructured.Unstructured) VMI {
	str := func(path ...string) string { s, _, _ := unstructured.NestedString(u.Object, path...); return s }
	_, outdated := u.GetLabels()[OutdatedLabel]
	v := VMI{Namespace: u.GetNamespace(), Name: u.GetName(), UID: string(u.GetUID()), Phase: str("status", "phase"), APIVersion: u.GetAPIVersion(),
		Outdated: outdated, Launcher: str("status", "launcherContainerImageVersion"), Deleting: u.GetDeletionTimestamp() != nil,
		Finalizers: u.GetFinalizers(), Labels: u.GetLabels(), EvictionStrategy: str("spec", "evictionStrategy")}
	for _, ref := range u.GetOwnerReferences() {
		if ref.Kind == "VirtualMachine" && ref.Controller != nil && *ref.Controller {
			v.Owner = ref.Name
		}
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "LiveMigratable" {
			v.Migratable = m["status"] == "True"
			v.NotMigratableReason, _ = m["reason"].(string)
		}
	}
	v.Migrating = str("status", "migrationState", "startTimestamp") != "" && str("status", "migrationState", "endTimestamp") == ""
	return v
}

// eachKubeVirtObject lists a kubevirt.io resource in every namespace, in
// pages, with the newest API version the cluster serves.
func (e *Executor) eachKubeVirtObject(ctx context.Context, resource string, f func(*unstructured.Unstructured)) error {
	for _, v := range []string{"v1", "v1alpha3"} {
		r := e.dyn.Resource(schema.GroupVersionResource{Group: "kubevirt.io", Version: v, Resource: resource}).Namespace("")
		served, err := listPages(ctx, r, f)
		if err != nil {
			return apiError(err, "list %s", resource)
		}
		if served {
			return nil
		}
	}
	return nil
}

// listPages calls f for every object, a page at a time; it reports whether
// the resource is served at all.
func listPages(ctx context.Context, r dynamic.ResourceInterface, f func(*unstructured.Unstructured)) (bool, error) {
	opts := metav1.ListOptions{Limit: listPage}
	for {
		list, err := r.List(ctx, opts)
		if apierrors.IsNotFound(err) && opts.Continue == "" {
			return false, nil
		}
		if err != nil {
			return true, err
		}
		for i := range list.Items {
			f(&list.Items[i])
		}
		if opts.Continue = list.GetContinue(); opts.Continue == "" {
			return true, nil
		}
	}
}

// countKubeVirtObjects counts a kubevirt.io resource cheaply: one page of
// one item and the apiserver's count of the rest.
func (e *Executor) countKubeVirtObjects(ctx context.Context, resource string) (int, error) {
	for _, v := range []string{"v1", "v1alpha3"} {
		list, err := e.dyn.Resource(schema.GroupVersionResource{Group: "kubevirt.io", Version: v, Resource: resource}).Namespace("").List(ctx, metav1.ListOptions{Limit: 1})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return 0, apiError(err, "list %s", resource)
		}
		n := len(list.Items)
		if rest := list.GetRemainingItemCount(); rest != nil {
			n += int(*rest)
		} else if list.GetContinue() != "" {
			n++ // more, uncounted: at least one
		}
		return n, nil
	}
	return 0, nil
}

// kubevirtFinalizers are the finalizers KubeVirt's controllers put on
// workloads (docs/kubevirt.md, "Deletion"): nothing else removes them.
var kubevirtFinalizers = []string{"foregroundDeleteVirtualMachine", "kubevirt.io/foregroundDeleteVirtualMachine",
	"kubevirt.io/virtualMachineControllerFinalize", "kubevirt.io/migrationJobFinalize"}

func holdsKubeVirtFinalizer(fs []string) bool {
	return slices.ContainsFunc(fs, func(f string) bool { return slices.Contains(kubevirtFinalizers, f) })
}

// stuckObject is a workload being deleted that holds a KubeVirt finalizer.
type stuckObject struct {
	resource, kind, namespace, name string
}

func (s stuckObject) String() string { return s.kind + " " + s.namespace + "/" + s.name }

// stuck lists the workloads being deleted that hold KubeVirt's finalizers.
func (w *Workloads) stuck() []stuckObject {
	var out []stuckObject
	for _, v := range w.VMIs {
		if v.Deleting && holdsKubeVirtFinalizer(v.Finalizers) {
			out = append(out, stuckObject{"virtualmachineinstances", "VirtualMachineInstance", v.Namespace, v.Name})
		}
	}
	for _, v := range w.VMs {
		if v.Deleting && holdsKubeVirtFinalizer(v.Finalizers) {
			out = append(out, stuckObject{"virtualmachines", "VirtualMachine", v.Namespace, v.Name})
		}
	}
	for _, m := range w.Migrations {
		if m.Deleting && holdsKubeVirtFinalizer(m.Finalizers) {
			out = append(out, stuckObject{"virtualmachineinstancemigrations", "VirtualMachineInstanceMigration", m.Namespace, m.Name})
		}
	}
	return out
}

// controllerRunning reports whether virt-controller's Deployment exists:
// while it does, it removes the workloads' finalizers itself.
func (e *Executor) controllerRunning(ctx context.Context) (bool, error) {
	_, err := e.kube.AppsV1().Deployments(e.cfg.Namespace).Get(ctx, "virt-controller", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, apiError(err, "read the virt-controller Deployment")
}

// releaseWorkloads removes KubeVirt's finalizers (and only those) from the
// workloads being deleted, once virt-controller is gone: never from one
// that runs. It returns what it released.
func (e *Executor) releaseWorkloads(ctx context.Context, w *Workloads) ([]string, error) {
	// virt-api is gone with virt-controller; its fail-closed webhooks on
	// VMIs and VMs (left behind) would refuse every write.
	for _, l := range []struct {
		gvr  schema.GroupVersionResource
		name string
	}{{vwcGVR, "virt-api-validator"}, {mwcGVR, "virt-api-mutator"}} {
		ctx1, cancel := e.call(ctx)
		err := e.dyn.Resource(l.gvr).Delete(ctx1, l.name, metav1.DeleteOptions{})
		cancel()
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, apiError(err, "delete %s", l.name)
		}
	}
	var out []string
	for _, o := range w.stuck() {
		if err := e.releaseOne(ctx, o); err != nil {
			return out, err
		}
		out = append(out, o.String())
	}
	return out, nil
}

func (e *Executor) releaseOne(ctx context.Context, o stuckObject) error {
	ctx1, cancel := e.call(ctx)
	defer cancel()
	for _, v := range []string{"v1", "v1alpha3"} {
		r := e.dyn.Resource(schema.GroupVersionResource{Group: "kubevirt.io", Version: v, Resource: o.resource}).Namespace(o.namespace)
		u, err := r.Get(ctx1, o.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return apiError(err, "read %s", o)
		case u.GetDeletionTimestamp() == nil:
			return nil // not being deleted (any more): never touched
		}
		u.SetFinalizers(slices.DeleteFunc(u.GetFinalizers(), func(f string) bool { return slices.Contains(kubevirtFinalizers, f) }))
		_, err = r.Update(ctx1, u, metav1.UpdateOptions{FieldManager: e.cfg.FieldManager})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return apiError(err, "remove KubeVirt's finalizers from %s", o)
	}
	return nil
}
