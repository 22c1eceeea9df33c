package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/release"
)

// resourceFor maps an allow-listed object to its client (no discovery).
// A v1beta1 CRD maps to the v1 endpoint: the object is the same, and a
// cluster that still holds a CRD applied long ago deletes it through v1.
func (e *Executor) resourceFor(o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	if gvk == release.CRDv1beta1 {
		gvk = release.CRDv1
	}
	for _, a := range release.Kinds {
		if a.GVK == gvk {
			r := e.dyn.Resource(a.GVK.GroupVersion().WithResource(a.Resource))
			if a.Namespaced {
				return r.Namespace(o.GetNamespace()), nil
			}
			return r, nil
		}
	}
	return nil, fault.Stalled(release.ReasonManifestRejected, nil, "no mapping for %s", o.GroupVersionKind())
}

// applyManifest server-side applies every object in order, as field manager
// kvgitops. Re-applying is idempotent, so an interrupted apply converges.
// Every object goes through admission first (a server-side dry run), so a
// refusal (the admission policy, a quota) comes before the first write, not
// half way through the manifest; objects of a namespace that does not exist
// yet (a first install) are checked when they are applied.
func (e *Executor) applyManifest(ctx context.Context, m *release.Manifest) error {
	if err := e.checkServed(ctx, m); err != nil {
		return err
	}
	if err := e.dryRun(ctx, m); err != nil {
		return err
	}
	e.hook("before-apply")
	for i, o := range m.Objects {
		r, err := e.resourceFor(o)
		if err != nil {
			return err
		}
		obj := applicable(o)
		ctx1, cancel := e.call(ctx)
		_, err = r.Apply(ctx1, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: e.cfg.FieldManager, Force: true})
		cancel()
		if err != nil && strings.Contains(err.Error(), "because it is being terminated") {
			return fault.Transient(ReasonNamespaceTerminating, err, "namespace %s is still terminating; applying %s %s will be retried", e.cfg.Namespace, obj.GetKind(), obj.GetName())
		}
		if err != nil {
			return apiError(err, "apply %s %s of %s", obj.GetKind(), obj.GetName(), m.Tag)
		}
		e.hook(fmt.Sprintf("applied-object-%d", i+1))
	}
	return nil
}

// applicable is o without what the server sets.
func applicable(o *unstructured.Unstructured) *unstructured.Unstructured {
	obj := o.DeepCopy()
	delete(obj.Object, "status")
	unstructured.RemoveNestedField(obj.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(obj.Object, "metadata", "resourceVersion")
	unstructured.RemoveNestedField(obj.Object, "metadata", "uid")
	return obj
}

// dryRun applies every object the cluster can take now with DryRun=All: a
// refusal is a terminal error that says nothing was applied.
func (e *Executor) dryRun(ctx context.Context, m *release.Manifest) error {
	ctx1, cancel := e.call(ctx)
	_, err := e.kube.CoreV1().Namespaces().Get(ctx1, e.cfg.Namespace, metav1.GetOptions{})
	cancel()
	nsExists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return apiError(err, "read namespace %s", e.cfg.Namespace)
	}
	for _, o := range m.Objects {
		if o.GetNamespace() != "" && !nsExists {
			continue
		}
		r, err := e.resourceFor(o)
		if err != nil {
			return err
		}
		obj := applicable(o)
		ctx1, cancel := e.call(ctx)
		_, err = r.Apply(ctx1, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: e.cfg.FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
		cancel()
		if err != nil && strings.Contains(err.Error(), "because it is being terminated") {
			return fault.Transient(ReasonNamespaceTerminating, err, "namespace %s is still terminating; applying %s %s will be retried", e.cfg.Namespace, obj.GetKind(), obj.GetName())
		}
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			return fault.Stalled(ReasonForbidden, err, "the cluster refuses %s %s of %s, so nothing was applied: %s", obj.GetKind(), obj.GetName(), m.Tag, err.Error())
		}
		if err != nil {
			return apiError(err, "check %s %s of %s before applying", obj.GetKind(), obj.GetName(), m.Tag)
		}
	}
	return nil
}

// patchKubeVirt JSON-patches the CR with a resourceVersion test in front, so
// a concurrent writer (the operator, another agent) makes it fail instead of
// being overwritten; it re-reads and retries a bounded number of times.
// ops builds the operations from the current state; nil means nothing to do.
func (e *Executor) patchKubeVirt(ctx context.Context, version string, ops func(*KubeVirtState) []map[string]any) error {
	r := e.dyn.Resource(kubevirtGVR(version)).Namespace(e.cfg.Namespace)
	e.hook("before-patch")
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		ctx1, cancel := e.call(ctx)
		u, err := r.Get(ctx1, "kubevirt", metav1.GetOptions{})
		if err != nil {
			cancel()
			return apiError(err, "read the KubeVirt CR")
		}
		kv := kubeVirtState(u)
		e.hook("kubevirt-read")
		o := ops(kv)
		if o == nil {
			cancel()
			return nil
		}
		patch, _ := json.Marshal(append([]map[string]any{{"op": "test", "path": "/metadata/resourceVersion", "value": kv.ResourceVersion}}, o...))
		_, err = r.Patch(ctx1, kv.Name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: e.cfg.FieldManager})
		cancel()
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) && !(apierrors.IsInvalid(err) || strings.Contains(err.Error(), "test operation")) {
			return apiError(err, "patch the KubeVirt CR")
		}
		last = err
	}
	return fault.Transient(ReasonAPIUnavailable, last, "the KubeVirt CR kept changing under 5 patch attempts")
}

// checkServed refuses, before anything is applied, a manifest with an API
// the cluster does not serve (a v1beta1 CRD on Kubernetes 1.22+), so a hop
// never fails halfway through its objects. The planner refuses such steps
// already; this holds when the plan was made without the cluster's version.
func (e *Executor) checkServed(ctx context.Context, m *release.Manifest) error {
	seen := map[string]bool{}
	for _, o := range m.Objects {
		gv := o.GetAPIVersion()
		if seen[gv] {
			continue
		}
		seen[gv] = true
		_, err := e.kube.Discovery().ServerResourcesForGroupVersion(gv)
		switch {
		case err == nil:
		case apierrors.IsNotFound(err):
			return fault.Stalled(ReasonAPIVersionNotServed, err, "kubevirt-operator.yaml of %s needs %s (%s %s), which the cluster does not serve; nothing was applied",
				m.Tag, gv, o.GetKind(), o.GetName())
		default:
			return apiError(err, "discover %s", gv)
		}
	}
	return nil
}
