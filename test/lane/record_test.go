package lane

import (
	"context"
	"slices"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

var (
	kvGVR  = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "kubevirts"}
	crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// kubevirtObjects lists what of KubeVirt is in the cluster: the operator
// manifest's objects by name and what virt-operator manages, by label.
func kubevirtObjects(ctx context.Context, dyn dynamic.Interface) []string {
	var out []string
	named := []struct {
		gvr      schema.GroupVersionResource
		ns, name string
	}{
		{schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, "", "kubevirt"},
		{crdGVR, "", "kubevirts.kubevirt.io"},
		{schema.GroupVersionResource{Group: "scheduling.k8s.io", Version: "v1", Resource: "priorityclasses"}, "", "kubevirt-cluster-critical"},
		{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, "", "kubevirt-operator"},
		{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, "", "kubevirt.io:operator"},
		{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}, "", "kubevirt-operator"},
		{schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}, "kubevirt", "kubevirt-operator"},
		{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, "kubevirt", "virt-operator"},
	}
	for _, n := range named {
		if _, err := dyn.Resource(n.gvr).Namespace(n.ns).Get(ctx, n.name, metav1.GetOptions{}); err == nil {
			out = append(out, n.gvr.Resource+"/"+n.name)
		}
	}
	for _, gvr := range []schema.GroupVersionResource{
		crdGVR,
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
		{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicies"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicybindings"},
		{Group: "apps", Version: "v1", Resource: "deployments"},
		{Group: "apps", Version: "v1", Resource: "daemonsets"},
	} {
		list, err := dyn.Resource(gvr).Namespace("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by in (virt-operator,kubevirt-operator)"})
		if err != nil {
			continue
		}
		for _, o := range list.Items {
			if o.GetDeletionTimestamp() == nil {
				out = append(out, gvr.Resource+"/"+o.GetName())
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}
