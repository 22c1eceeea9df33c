package planner_test

import (
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/planner"
)

// ownedBy are KubeVirt objects as each tool leaves them, with the labels,
// annotations and owners it really sets (docs/kubevirt.md, "Managed
// elsewhere"), and the owner kvgitops must name.
var ownedBy = []struct {
	tool, evidence string
	obj            planner.ManagedObject
}{
	{"OpenShift Virtualization (HCO)", `label app.kubernetes.io/managed-by="hco-operator"`, planner.ManagedObject{
		Kind: "KubeVirt", Namespace: "openshift-cnv", Name: "kubevirt-kubevirt-hyperconverged",
		Labels: map[string]string{"app": "kubevirt-hyperconverged", "app.kubernetes.io/component": "compute",
			"app.kubernetes.io/managed-by": "hco-operator", "app.kubernetes.io/part-of": "hyperconverged-cluster", "app.kubernetes.io/version": "4.18.0"}}},
	{"Harvester", "namespace harvester-system", planner.ManagedObject{
		Kind: "KubeVirt", Namespace: "harvester-system", Name: "kubevirt",
		Labels:      map[string]string{"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "harvester"},
		Annotations: map[string]string{"meta.helm.sh/release-name": "harvester", "meta.helm.sh/release-namespace": "harvester-system"}}},
	{"OLM", `label olm.owner.kind="ClusterServiceVersion"`, planner.ManagedObject{
		Kind: "Deployment", Namespace: "kubevirt", Name: "virt-operator",
		Labels:     map[string]string{"olm.owner": "kubevirt-operator.v1.8.4", "olm.owner.kind": "ClusterServiceVersion", "olm.owner.namespace": "kubevirt"},
		OwnerKinds: []string{"ClusterServiceVersion"}}},
	{"OLM", "an ownerReference to a ClusterServiceVersion", planner.ManagedObject{
		Kind: "Deployment", Namespace: "kubevirt", Name: "virt-operator", OwnerKinds: []string{"ClusterServiceVersion"}}},
	{"Flux", `label kustomize.toolkit.fluxcd.io/name="kubevirt"`, planner.ManagedObject{
		Kind: "KubeVirt", Namespace: "kubevirt", Name: "kubevirt",
		Labels: map[string]string{"kustomize.toolkit.fluxcd.io/name": "kubevirt", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}}},
	{"Flux", `label helm.toolkit.fluxcd.io/name="kubevirt"`, planner.ManagedObject{
		Kind: "Deployment", Namespace: "kubevirt", Name: "virt-operator",
		Labels:      map[string]string{"helm.toolkit.fluxcd.io/name": "kubevirt", "helm.toolkit.fluxcd.io/namespace": "flux-system", "app.kubernetes.io/managed-by": "Helm"},
		Annotations: map[string]string{"meta.helm.sh/release-name": "kubevirt"}}},
	{"Argo CD", `annotation argocd.argoproj.io/tracking-id="kubevirt:kubevirt.io/KubeVirt:kubevirt/kubevirt"`, planner.ManagedObject{
		Kind: "KubeVirt", Namespace: "kubevirt", Name: "kubevirt",
		Annotations: map[string]string{"argocd.argoproj.io/tracking-id": "kubevirt:kubevirt.io/KubeVirt:kubevirt/kubevirt"}}},
	{"Argo CD", `label app.kubernetes.io/instance="kubevirt"`, planner.ManagedObject{
		Kind: "Deployment", Namespace: "kubevirt", Name: "virt-operator", Labels: map[string]string{"app.kubernetes.io/instance": "kubevirt"}}},
	{"Helm", `label app.kubernetes.io/managed-by="Helm"`, planner.ManagedObject{
		Kind: "Deployment", Namespace: "kubevirt", Name: "virt-operator",
		Labels:      map[string]string{"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "kubevirt"},
		Annotations: map[string]string{"meta.helm.sh/release-name": "kubevirt", "meta.helm.sh/release-namespace": "kubevirt"}}},
}

// TestKubeVirtManagedElsewhereIsRefused: whatever the desired state, a
// KubeVirt another tool manages is refused, naming the tool, the object and
// the mark, with what to do instead, and nothing is planned.
func TestKubeVirtManagedElsewhereIsRefused(t *testing.T) {
	for _, tt := range ownedBy {
		for _, spec := range []string{"  version: v1.8.4", "  state: Absent"} {
			o := locked("v1.7.4")
			o.Managed = []planner.ManagedObject{{Kind: "KubeVirt", Namespace: "kubevirt", Name: "kubevirt"}, tt.obj}
			p, err := planner.Compute(mustDesired(t, spec), o, realCatalog(t))
			re, ok := err.(*planner.RefusalError)
			if !ok || re.Reason != planner.ReasonManagedElsewhere {
				t.Errorf("%s, %s: plan %v, %v; want ManagedElsewhere", tt.tool, spec, p.Action, err)
				continue
			}
			for _, want := range []string{tt.tool + " manages KubeVirt", tt.obj.String(), tt.evidence, "kvgitops changes nothing"} {
				if !strings.Contains(re.Message, want) {
					t.Errorf("%s, %s: %q does not say %q", tt.tool, spec, re.Message, want)
				}
			}
		}
	}
}

// TestKubeVirtOfItsOwnIsNotManagedElsewhere: the objects of KubeVirt's
// own manifests and of kvgitops carry none of those marks.
func TestKubeVirtOfItsOwnIsNotManagedElsewhere(t *testing.T) {
	objs := []planner.ManagedObject{
		{Kind: "KubeVirt", Namespace: "kubevirt", Name: "kubevirt"},
		{Kind: "Deployment", Namespace: "kubevirt", Name: "virt-operator",
			Labels:      map[string]string{"kubevirt.io": "virt-operator", "app.kubernetes.io/managed-by": "kubevirt-operator", "app.kubernetes.io/component": "kubevirt"},
			Annotations: map[string]string{"deployment.kubernetes.io/revision": "2"}},
	}
	if f, ok := planner.Owner(objs); ok {
		t.Errorf("owner %+v of KubeVirt's own objects", f)
	}
}
