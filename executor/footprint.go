package executor

import (
	"context"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kvgitops/kvgitops/release"
)

// What KubeVirt leaves in a cluster is defined by two sets
// (docs/teardown.md): the objects of kubevirt-operator.yaml, by name (the
// allow-list), and what virt-operator created for the install, by the
// label it puts on everything it manages. KubeVirt is absent when neither
// set has anything left.

// managedBy selects what virt-operator manages (both values it has used).
const managedBy = "app.kubernetes.io/managed-by in (virt-operator,kubevirt-operator)"

// CRDFinalizer is what virt-operator puts on its CRDs while it deletes them
// (v0.50+) and removes once their instances are gone.
const CRDFinalizer = "kubevirt.io/virtOperatorFinalizer"

var (
	clusterRoleGVR        = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}
	clusterRoleBindingGVR = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}
)

// remnantKinds are the cluster-scoped kinds virt-operator creates; its
// namespaced objects go with KubeVirt's namespace.
var remnantKinds = []struct {
	gvr  schema.GroupVersionResource
	kind string
}{
	{crdGVR, "CustomResourceDefinition"},
	{clusterRoleGVR, "ClusterRole"},
	{clusterRoleBindingGVR, "ClusterRoleBinding"},
	{apiServiceGVR, "APIService"},
	{vwcGVR, "ValidatingWebhookConfiguration"},
	{mwcGVR, "MutatingWebhookConfiguration"},
}

// Remnant is one object virt-operator created.
type Remnant struct {
	gvr        schema.GroupVersionResource
	Kind, Name string
	Deleting   bool
	Finalizers []string
}

func (r Remnant) String() string { return r.Kind + "/" + r.Name }

// observeRemnants lists what virt-operator created, cluster-wide. A CRD
// counts only in a KubeVirt group, so no other product's CRD is touched.
func (e *Executor) observeRemnants(ctx context.Context) ([]Remnant, error) {
	var out []Remnant
	for _, k := range remnantKinds {
		list, err := e.dyn.Resource(k.gvr).List(ctx, metav1.ListOptions{LabelSelector: managedBy})
		if err != nil {
			return nil, apiError(err, "list %ss virt-operator created", k.kind)
		}
		for _, u := range list.Items {
			if k.kind == "CustomResourceDefinition" && !release.KubeVirtGroup(crdGroup(&u)) {
				continue
			}
			out = append(out, Remnant{gvr: k.gvr, Kind: k.kind, Name: u.GetName(), Deleting: u.GetDeletionTimestamp() != nil, Finalizers: u.GetFinalizers()})
		}
	}
	return out, nil
}

func crdGroup(u *unstructured.Unstructured) string {
	g, _, _ := unstructured.NestedString(u.Object, "spec", "group")
	return g
}

// stuckCRDs are KubeVirt CRDs being deleted that wait on the operator's
// finalizer.
func stuckCRDs(rs []Remnant) []string {
	var out []string
	for _, r := range rs {
		if r.Kind == "CustomResourceDefinition" && r.Deleting && slices.Contains(r.Finalizers, CRDFinalizer) {
			out = append(out, r.Name)
		}
	}
	return out
}

// observeOperatorObjects lists which objects of kubevirt-operator.yaml
// exist, by the names of the allow-list.
func (e *Executor) observeOperatorObjects(ctx context.Context) ([]string, error) {
	var out []string
	for _, o := range allowListObjects(e.cfg.Namespace) {
		r, err := e.resourceFor(o)
		if err != nil {
			return nil, err
		}
		_, err = r.Get(ctx, o.GetName(), metav1.GetOptions{})
		switch {
		case err == nil:
			out = append(out, o.GetKind()+"/"+o.GetName())
		case !apierrors.IsNotFound(err):
			return nil, apiError(err, "read %s %s", o.GetKind(), o.GetName())
		}
	}
	return out, nil
}

// strayKubeVirts names the CRs virt-operator does not serve: with more than
// one it serves none; a lone one must sit in its namespace.
func strayKubeVirts(items []unstructured.Unstructured, namespace string) (served *unstructured.Unstructured, stray []string) {
	for i := range items {
		if items[i].GetNamespace() == namespace && served == nil {
			served = &items[i]
			continue
		}
		stray = append(stray, items[i].GetNamespace()+"/"+items[i].GetName())
	}
	if len(stray) > 0 && served != nil {
		stray = append(stray, served.GetNamespace()+"/"+served.GetName())
		slices.Sort(stray)
	}
	return served, stray
}
