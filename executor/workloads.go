package executor

import (
	"context"
	"fmt"
	"slices"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// VMI is one virtual machine instance.
type VMI struct {
	Namespace, Name, UID, Phase string
	Outdated                    bool   // virt-controller labelled it: its virt-launcher is older than the install
	Launcher                    string // status.launcherContainerImageVersion
	Deleting                    bool
}

// OutdatedLabel is what virt-controller puts on a VMI whose virt-launcher is
// older than the install (docs/kubevirt.md, "Workload updates").
const OutdatedLabel = "kubevirt.io/outdatedLauncherImage"

// Key is namespace/name.
func (v VMI) key() string { return v.Namespace + "/" + v.Name }

// WorkloadReport compares the VMIs running before a hop with now, and says
// how many still run an older virt-launcher.
type WorkloadReport struct {
	RunningBefore int
	RunningNow    int
	Disrupted     []string // namespace/name: gone, restarted (new UID) or no longer Running
	Outdated      []string // namespace/name of VMIs on an older virt-launcher
	Note          string   // what happens to them
}

// observeWorkloads lists VMIs and counts VMs across namespaces; an absent
// CRD means none.
func (e *Executor) observeWorkloads(ctx context.Context) ([]VMI, int, error) {
	var vmis []VMI
	list, err := e.listKubeVirtResource(ctx, "virtualmachineinstances")
	if err != nil {
		return nil, 0, err
	}
	for _, u := range list {
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		_, outdated := u.GetLabels()[OutdatedLabel]
		launcher, _, _ := unstructured.NestedString(u.Object, "status", "launcherContainerImageVersion")
		vmis = append(vmis, VMI{Namespace: u.GetNamespace(), Name: u.GetName(), UID: string(u.GetUID()), Phase: phase,
			Outdated: outdated, Launcher: launcher, Deleting: u.GetDeletionTimestamp() != nil})
	}
	sort.Slice(vmis, func(i, j int) bool { return vmis[i].key() < vmis[j].key() })
	vms, err := e.listKubeVirtResource(ctx, "virtualmachines")
	return vmis, len(vms), err
}

func (e *Executor) listKubeVirtResource(ctx context.Context, resource string) ([]unstructured.Unstructured, error) {
	for _, v := range []string{"v1", "v1alpha3"} {
		list, err := e.dyn.Resource(schema.GroupVersionResource{Group: "kubevirt.io", Version: v, Resource: resource}).Namespace("").List(ctx, metav1.ListOptions{})
		switch {
		case err == nil:
			return list.Items, nil
		case apierrors.IsNotFound(err):
			continue
		default:
			return nil, apiError(err, "list %s", resource)
		}
	}
	return nil, nil
}

// compareWorkloads reports which VMIs running before are not running now
// with the same UID. With the Evict update method, a new UID is expected.
func compareWorkloads(before, now []VMI, methods []string) WorkloadReport {
	r := WorkloadReport{}
	byKey := map[string]VMI{}
	for _, v := range now {
		byKey[v.key()] = v
		if v.Phase == "Running" {
			r.RunningNow++
		}
	}
	evict := slices.Contains(methods, "Evict")
	for _, b := range before {
		if b.Phase != "Running" {
			continue
		}
		r.RunningBefore++
		n, ok := byKey[b.key()]
		switch {
		case evict:
		case !ok:
			r.Disrupted = append(r.Disrupted, b.key()+" (gone)")
		case n.UID != b.UID:
			r.Disrupted = append(r.Disrupted, b.key()+" (restarted)")
		case n.Phase != "Running":
			r.Disrupted = append(r.Disrupted, fmt.Sprintf("%s (%s)", b.key(), n.Phase))
		}
	}
	return r
}
