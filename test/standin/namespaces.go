package standin

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// NamespacedKinds are what a KubeVirt namespace holds in the test ground.
var NamespacedKinds = []schema.GroupVersionResource{
	{Group: "kubevirt.io", Version: "v1", Resource: "kubevirts"},
	{Group: "kubevirt.io", Version: "v1alpha3", Resource: "kubevirts"}, // releases before v0.37 serve only this
	{Group: "apps", Version: "v1", Resource: "deployments"},
	{Group: "apps", Version: "v1", Resource: "daemonsets"},
	{Group: "batch", Version: "v1", Resource: "jobs"},
	{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"},
	{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"},
	{Version: "v1", Resource: "pods"},
	{Version: "v1", Resource: "services"},
	{Version: "v1", Resource: "serviceaccounts"},
	{Version: "v1", Resource: "configmaps"},
	{Version: "v1", Resource: "secrets"},
	{Version: "v1", Resource: "events"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
	{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"},
}

// FinalizeNamespace does what kube-controller-manager's namespace
// controller would: once the namespace is Terminating it deletes what is
// inside and, when nothing is left, finalizes it. An object with a
// finalizer keeps it Terminating, as in a real cluster. It reports whether
// there is nothing left to do (no namespace, or one not being deleted).
func FinalizeNamespace(ctx context.Context, kube kubernetes.Interface, dyn dynamic.Interface, name string) (bool, error) {
	ns, err := kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if ns.DeletionTimestamp == nil {
		return true, nil
	}
	remaining := 0
	for _, gvr := range NamespacedKinds {
		list, err := dyn.Resource(gvr).Namespace(name).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return false, err
		}
		for _, o := range list.Items {
			remaining++
			if o.GetDeletionTimestamp() != nil {
				continue
			}
			err := dyn.Resource(gvr).Namespace(name).Delete(ctx, o.GetName(), metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
			if err != nil && !apierrors.IsNotFound(err) {
				return false, err
			}
		}
	}
	if remaining > 0 {
		return false, nil
	}
	ns.Spec.Finalizers = []corev1.FinalizerName{}
	_, err = kube.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return false, nil
	}
	return err == nil, err
}
