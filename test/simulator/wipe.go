package simulator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/standin"
)

// wipeTimeout bounds each wait of a wipe: the namespace's finalization and
// the CRDs' deletion (which the apiserver finishes asynchronously, slower
// on a loaded machine).
const wipeTimeout = 60 * time.Second

type wipedObjects []struct {
	gvr        schema.GroupVersionResource
	namespaced bool
	names      []string
}

// gates go first: the webhooks (which would refuse the CR's deletion while
// workloads exist) and the API services.
var gates = wipedObjects{
	{vwcGVR, false, []string{"virt-operator-validator", "virt-api-validator"}},
	{mwcGVR, false, []string{"virt-api-mutator"}},
	{apiSvcGVR, false, []string{"v1.subresources.kubevirt.io", "v1alpha3.subresources.kubevirt.io"}},
}

// wiped goes once the CRs are deleted and nothing holds them: the
// components, the operator's RBAC and priority class, the CRDs, and the
// namespace last.
var wiped = wipedObjects{
	{deploymentGVR, true, []string{"virt-operator", "virt-api", "virt-controller"}},
	{daemonSetGVR, true, []string{"virt-handler"}},
	{serviceGVR, true, []string{"virt-api", "kubevirt-operator-webhook"}},
	{roleGVR, false, []string{releases.ComponentRoleName, "kubevirt-operator", "kubevirt.io:operator"}},
	{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}, false, []string{"kubevirt-operator"}},
	{schema.GroupVersionResource{Group: "scheduling.k8s.io", Version: "v1", Resource: "priorityclasses"}, false, []string{"kubevirt-cluster-critical"}},
	{crdGVR, false, wipedCRDs},
	{schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, false, []string{releases.Namespace}},
}

var wipedCRDs = []string{"kubevirts.kubevirt.io", "virtualmachineinstances.kubevirt.io", "virtualmachines.kubevirt.io", "virtualmachineinstancemigrations.kubevirt.io"}

// Wipe removes everything a KubeVirt install and its operator manifest
// create, the namespace included (finalized as kube-controller-manager
// would, which a bare apiserver lacks), so the next test starts from a
// cluster without KubeVirt whatever ran before it. It strips the
// finalizers only KubeVirt would remove first, like an administrator would.
func Wipe(ctx context.Context, admin *rest.Config) error {
	cfg := rest.CopyConfig(admin)
	cfg.WarningHandler = rest.NoWarnings{}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	w := wiper{ctx: ctx, dyn: dyn}
	w.deleteAll(gates)
	w.deleteCRs()
	w.releaseFinalizers()
	w.deleteAll(wiped)
	if err := errors.Join(w.errs...); err != nil {
		return err
	}
	if err := w.finalizeNamespace(kube); err != nil {
		return err
	}
	return w.awaitCRDs()
}

// wiper collects the errors of a wipe's deletions.
type wiper struct {
	ctx  context.Context
	dyn  dynamic.Interface
	errs []error
}

func (w *wiper) check(err error) {
	if err != nil && !apierrors.IsNotFound(err) {
		w.errs = append(w.errs, err)
	}
}

func (w *wiper) delete(gvr schema.GroupVersionResource, ns, name string) {
	err := w.dyn.Resource(gvr).Namespace(ns).Delete(w.ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	if err != nil && !apierrors.IsNotFound(err) {
		w.errs = append(w.errs, fmt.Errorf("delete %s %s: %w", gvr.Resource, name, err))
	}
}

func (w *wiper) deleteAll(objects wipedObjects) {
	for _, o := range objects {
		ns := ""
		if o.namespaced {
			ns = releases.Namespace
		}
		for _, name := range o.names {
			w.delete(o.gvr, ns, name)
		}
	}
}

// deleteCRs deletes every KubeVirt CR, its finalizer stripped first.
func (w *wiper) deleteCRs() {
	kvs, err := w.dyn.Resource(kubevirtGVR).Namespace("").List(w.ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, kv := range kvs.Items {
		if len(kv.GetFinalizers()) > 0 {
			_, err := w.dyn.Resource(kubevirtGVR).Namespace(kv.GetNamespace()).Patch(w.ctx, kv.GetName(), "application/json-patch+json",
				[]byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{})
			w.check(err)
		}
		w.delete(kubevirtGVR, kv.GetNamespace(), kv.GetName())
	}
}

// releaseFinalizers strips what only KubeVirt removes: the VMIs' and the
// operator's on the managed CRDs.
func (w *wiper) releaseFinalizers() {
	w.check(stripFinalizers(w.ctx, w.dyn, vmiGVR))
	w.check(stripFinalizers(w.ctx, w.dyn, vmGVR))
	w.check(stripFinalizers(w.ctx, w.dyn, migrationGVR))
	for _, c := range managedCRDs {
		crd, err := w.dyn.Resource(crdGVR).Get(w.ctx, c, metav1.GetOptions{})
		if err != nil || !slices.Contains(crd.GetFinalizers(), CRDFinalizer) {
			continue
		}
		crd.SetFinalizers(slices.DeleteFunc(crd.GetFinalizers(), func(f string) bool { return f == CRDFinalizer }))
		_, err = w.dyn.Resource(crdGVR).Update(w.ctx, crd, metav1.UpdateOptions{})
		w.check(err)
	}
}

// finalizeNamespace does what kube-controller-manager would for the
// deleted namespace, until it is gone.
func (w *wiper) finalizeNamespace(kube kubernetes.Interface) error {
	ns := releases.Namespace
	for deadline := time.Now().Add(wipeTimeout); ; time.Sleep(50 * time.Millisecond) {
		settled, err := standin.FinalizeNamespace(w.ctx, kube, w.dyn, ns)
		if err != nil {
			return fmt.Errorf("finalize namespace %s: %w", ns, err)
		}
		if settled {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s still terminating %s after wipe", ns, wipeTimeout)
		}
	}
}

// awaitCRDs waits for the apiserver to finish deleting the CRDs, letting go
// whatever instance or finalizer still holds one.
func (w *wiper) awaitCRDs() error {
	deadline := time.Now().Add(wipeTimeout)
	for _, c := range wipedCRDs {
		for {
			_, err := w.dyn.Resource(crdGVR).Get(w.ctx, c, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CRD %s still present %s after wipe", c, wipeTimeout)
			}
			w.releaseFinalizers()
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// stripFinalizers removes every finalizer of the objects of gvr (in every
// namespace), so a deletion waiting for them goes through.
func stripFinalizers(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource) error {
	list, err := dyn.Resource(gvr).Namespace("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil // the CRD is gone: nothing to release
	}
	var errs []error
	for _, o := range list.Items {
		if len(o.GetFinalizers()) == 0 {
			continue
		}
		o.SetFinalizers(nil)
		if _, err := dyn.Resource(gvr).Namespace(o.GetNamespace()).Update(ctx, &o, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
