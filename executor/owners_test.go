package executor_test

import (
	"context"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kvgitops/kvgitops/planner"
)

// TestForeignOwnersAreObserved: the marks HCO, OLM, Flux, Argo CD and Helm
// leave on the KubeVirt CR or the virt-operator Deployment reach the
// planner from the cluster, as the deploy/ ServiceAccount reads it, and
// name the owner.
func TestForeignOwnersAreObserved(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.0.0", planner.MethodOperator) // v1.0 has no create webhook for a second CR
	ctx := context.Background()
	kube := kubernetes.NewForConfigOrDie(h.admin)
	if f, ok := planner.Owner(h.observe(t).Managed); ok {
		t.Fatalf("a KubeVirt kvgitops installed is managed by %+v", f)
	}
	deployGVR := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	// meta merges m into the metadata of kubevirt/name and returns what
	// takes it out again.
	meta := func(gvr schema.GroupVersionResource, name string, m map[string]any) func() {
		set := func(m map[string]any) {
			patch, _ := json.Marshal(map[string]any{"metadata": m})
			if _, err := h.dyn.Resource(gvr).Namespace("kubevirt").Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		set(m)
		undo := map[string]any{}
		for k, v := range m {
			switch v := v.(type) {
			case map[string]any:
				keys := map[string]any{}
				for key := range v {
					keys[key] = nil
				}
				undo[k] = keys
			default:
				undo[k] = nil
			}
		}
		return func() { set(undo) }
	}
	for _, tt := range []struct {
		tool, object string
		mark         func() func()
	}{
		{"Flux", "KubeVirt kubevirt/kubevirt", func() func() {
			return meta(kvGVR, "kubevirt", map[string]any{"labels": map[string]any{"kustomize.toolkit.fluxcd.io/name": "kubevirt", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}})
		}},
		{"Argo CD", "KubeVirt kubevirt/kubevirt", func() func() {
			return meta(kvGVR, "kubevirt", map[string]any{"annotations": map[string]any{"argocd.argoproj.io/tracking-id": "kubevirt:kubevirt.io/KubeVirt:kubevirt/kubevirt"}})
		}},
		{"OLM", "Deployment kubevirt/virt-operator", func() func() {
			return meta(deployGVR, "virt-operator", map[string]any{
				"labels": map[string]any{"olm.owner": "kubevirt-operator.v1.0.0", "olm.owner.kind": "ClusterServiceVersion", "olm.owner.namespace": "kubevirt"},
				"ownerReferences": []any{map[string]any{"apiVersion": "operators.coreos.com/v1alpha1", "kind": "ClusterServiceVersion",
					"name": "kubevirt-operator.v1.0.0", "uid": "0b7c3e1a-6f0e-4d7e-9a53-1c8d2f3b4a5e", "controller": false, "blockOwnerDeletion": false}}})
		}},
		{"Helm", "Deployment kubevirt/virt-operator", func() func() {
			return meta(deployGVR, "virt-operator", map[string]any{"labels": map[string]any{"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "kubevirt"},
				"annotations": map[string]any{"meta.helm.sh/release-name": "kubevirt", "meta.helm.sh/release-namespace": "kubevirt"}})
		}},
		{"OpenShift Virtualization (HCO)", "KubeVirt kubevirt-hyperconverged/kubevirt-kubevirt-hyperconverged", func() func() {
			// HCO's CR in its own namespace, beside (here) the one kvgitops installed.
			if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubevirt-hyperconverged"}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			kv, err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Get(ctx, "kubevirt", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			kv.SetNamespace("kubevirt-hyperconverged")
			kv.SetName("kubevirt-kubevirt-hyperconverged")
			kv.SetResourceVersion("")
			kv.SetUID("")
			kv.SetFinalizers(nil)
			kv.SetLabels(map[string]string{"app": "kubevirt-hyperconverged", "app.kubernetes.io/component": "compute",
				"app.kubernetes.io/managed-by": "hco-operator", "app.kubernetes.io/part-of": "hyperconverged-cluster"})
			delete(kv.Object, "status")
			if _, err := h.dyn.Resource(kvGVR).Namespace("kubevirt-hyperconverged").Create(ctx, kv, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			return func() {
				_ = h.dyn.Resource(kvGVR).Namespace("kubevirt-hyperconverged").Delete(ctx, "kubevirt-kubevirt-hyperconverged", metav1.DeleteOptions{})
			}
		}},
	} {
		undo := tt.mark()
		f, ok := planner.Owner(h.observe(t).Managed)
		if !ok || f.Tool != tt.tool || f.Object != tt.object {
			t.Errorf("%s: observed owner %+v (found %v), want %s on %s", tt.tool, f, ok, tt.tool, tt.object)
		}
		undo()
	}
}
