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

// Wipe removes everything a KubeVirt install and its operator manifest
// create, the namespace included (finalized as kube-controller-manager
// would, which a bare apiserver lacks), so the next test starts from a
// cluster without KubeVirt whatever ran before it. It strips finalizers and
// deletes the webhooks first, like an administrator would.
func Wipe(ctx context.Context, admin *rest.Config) error {
	cfg := rest.CopyConfig(admin)
	cfg.WarningHandler = rest.NoWarnings{}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ns := releases.Namespace
	del := func(gvr schema.GroupVersionResource, ns, name string) error {
		err := dyn.Resource(gvr).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s %s: %w", gvr.Resource, name, err)
		}
		return nil
	}
	var errs []error
	for _, n := range []struct {
		gvr  schema.GroupVersionResource
		name string
	}{{vwcGVR, "virt-operator-validator"}, {vwcGVR, "virt-api-validator"}, {mwcGVR, "virt-api-mutator"},
		{apiSvcGVR, "v1.subresources.kubevirt.io"}, {apiSvcGVR, "v1alpha3.subresources.kubevirt.io"}} {
		errs = append(errs, del(n.gvr, "", n.name))
	}
	if kvs, err := dyn.Resource(kubevirtGVR).Namespace("").List(ctx, metav1.ListOptions{}); err == nil {
		for _, kv := range kvs.Items {
			patch := []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`)
			if len(kv.GetFinalizers()) > 0 {
				_, err := dyn.Resource(kubevirtGVR).Namespace(kv.GetNamespace()).Patch(ctx, kv.GetName(), "application/json-patch+json", patch, metav1.PatchOptions{})
				if err != nil && !apierrors.IsNotFound(err) {
					errs = append(errs, err)
				}
			}
			errs = append(errs, del(kubevirtGVR, kv.GetNamespace(), kv.GetName()))
		}
	}
	// VMIs and the managed CRDs hold finalizers that only KubeVirt removes.
	if vmis, err := dyn.Resource(vmiGVR).Namespace("").List(ctx, metav1.ListOptions{}); err == nil {
		for _, v := range vmis.Items {
			if len(v.GetFinalizers()) > 0 {
				v.SetFinalizers(nil)
				if _, err := dyn.Resource(vmiGVR).Namespace(v.GetNamespace()).Update(ctx, &v, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, c := range managedCRDs {
		if crd, err := dyn.Resource(crdGVR).Get(ctx, c, metav1.GetOptions{}); err == nil && slices.Contains(crd.GetFinalizers(), CRDFinalizer) {
			crd.SetFinalizers(slices.DeleteFunc(crd.GetFinalizers(), func(f string) bool { return f == CRDFinalizer }))
			if _, err := dyn.Resource(crdGVR).Update(ctx, crd, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	for _, d := range []string{"virt-operator", "virt-api", "virt-controller"} {
		errs = append(errs, del(deploymentGVR, ns, d))
	}
	errs = append(errs, del(daemonSetGVR, ns, "virt-handler"))
	for _, s := range []string{"virt-api", "kubevirt-operator-webhook"} {
		errs = append(errs, del(serviceGVR, ns, s))
	}
	for _, r := range []string{releases.ComponentRoleName, "kubevirt-operator", "kubevirt.io:operator"} {
		errs = append(errs, del(roleGVR, "", r))
	}
	crb := schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}
	errs = append(errs, del(crb, "", "kubevirt-operator"))
	errs = append(errs, del(schema.GroupVersionResource{Group: "scheduling.k8s.io", Version: "v1", Resource: "priorityclasses"}, "", "kubevirt-cluster-critical"))
	crds := []string{"kubevirts.kubevirt.io", "virtualmachineinstances.kubevirt.io", "virtualmachines.kubevirt.io"}
	for _, c := range crds {
		errs = append(errs, del(crdGVR, "", c))
	}
	// The namespace goes too: a test must not find one left by another
	// (finalized below, as kube-controller-manager would).
	errs = append(errs, del(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, "", ns))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		settled, err := standin.FinalizeNamespace(ctx, kube, dyn, ns)
		if err != nil {
			return fmt.Errorf("finalize namespace %s: %w", ns, err)
		}
		if settled {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s still terminating after wipe", ns)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// CRD deletion finishes asynchronously inside the apiserver.
	deadline = time.Now().Add(30 * time.Second)
	for _, c := range crds {
		for {
			_, err := dyn.Resource(crdGVR).Get(ctx, c, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CRD %s still present after wipe", c)
			}
			stripVMIFinalizers(ctx, dyn)
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// stripVMIFinalizers lets VMIs that a CRD deletion is waiting for go.
func stripVMIFinalizers(ctx context.Context, dyn dynamic.Interface) {
	vmis, err := dyn.Resource(vmiGVR).Namespace("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, v := range vmis.Items {
		if len(v.GetFinalizers()) > 0 {
			v.SetFinalizers(nil)
			_, _ = dyn.Resource(vmiGVR).Namespace(v.GetNamespace()).Update(ctx, &v, metav1.UpdateOptions{})
		}
	}
}
