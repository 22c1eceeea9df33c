package planner

import (
	"fmt"
	"slices"

	"github.com/kvgitops/kvgitops/redact"
)

// ManagedObject is one of KubeVirt's objects as observed, with what says
// who manages it: the KubeVirt CRs and the virt-operator Deployment.
type ManagedObject struct {
	Kind, Namespace, Name string
	Labels, Annotations   map[string]string
	OwnerKinds            []string // the kinds of its ownerReferences
}

func (m ManagedObject) String() string {
	if m.Namespace == "" {
		return m.Kind + " " + m.Name
	}
	return m.Kind + " " + m.Namespace + "/" + m.Name
}

// ForeignOwner is a tool other than kvgitops that manages KubeVirt in the
// cluster (docs/kubevirt.md, "Managed elsewhere").
type ForeignOwner struct {
	Tool     string // e.g. "OpenShift Virtualization (HCO)"
	Object   string // the object that says so
	Evidence string // e.g. "label app.kubernetes.io/managed-by=hco-operator"
	Advice   string // what to do instead
}

// owners are the tools kvgitops recognises, in the order they are tried:
// an HCO or Harvester install also carries OLM's or Helm's marks, and Flux
// drives Helm; the first that matches names the owner.
var owners = []struct {
	tool, advice string
	marks        []mark
}{
	{"OpenShift Virtualization (HCO)",
		"the HyperConverged CR configures and upgrades KubeVirt there, and HCO reverts any other change: upgrade through it, and take this cluster out of kvgitops",
		[]mark{label("app.kubernetes.io/managed-by", "hco-operator"), label("app.kubernetes.io/part-of", "hyperconverged-cluster")}},
	{"Harvester",
		"each Harvester release ships its KubeVirt: upgrade Harvester, and take this cluster out of kvgitops",
		[]mark{namespace("harvester-system"), annotation("meta.helm.sh/release-name", "harvester")}},
	{"OLM",
		"a ClusterServiceVersion installed this virt-operator and OLM puts it back: upgrade through its Subscription, or uninstall the OLM operator (keeping the KubeVirt CR) before kvgitops takes KubeVirt over",
		[]mark{label("olm.owner.kind", "ClusterServiceVersion"), ownerKind("ClusterServiceVersion")}},
	{"Flux",
		"Flux applies it from Git and would undo kvgitops's changes: stop Flux managing it without deleting it (annotation kustomize.toolkit.fluxcd.io/prune: disabled, then drop it from the source), then remove Flux's labels from it",
		[]mark{label("kustomize.toolkit.fluxcd.io/name", ""), label("helm.toolkit.fluxcd.io/name", "")}},
	{"Argo CD",
		"an Argo CD Application syncs it from Git and would undo kvgitops's changes: take it out of the Application without pruning (sync option Prune=false), then remove Argo CD's tracking annotation or label from it",
		[]mark{annotation("argocd.argoproj.io/tracking-id", ""), label("argocd.argoproj.io/instance", ""), argoInstanceLabel}},
	{"Helm",
		"a Helm release owns it and its next upgrade would undo kvgitops's changes: keep it out of the release (annotation helm.sh/resource-policy: keep, then drop it from the chart), then remove Helm's label and annotations from it",
		[]mark{label("app.kubernetes.io/managed-by", "Helm"), annotation("meta.helm.sh/release-name", "")}},
}

// A mark is one sign of an owner on an object: the evidence, or "".
type mark func(ManagedObject) string

// label matches a label with value (any value when value is "").
func label(key, value string) mark {
	return func(m ManagedObject) string { return keyed("label", m.Labels, key, value) }
}

func annotation(key, value string) mark {
	return func(m ManagedObject) string { return keyed("annotation", m.Annotations, key, value) }
}

func keyed(what string, kv map[string]string, key, value string) string {
	v, ok := kv[key]
	if !ok || (value != "" && v != value) {
		return ""
	}
	return fmt.Sprintf("%s %s=%s", what, key, redact.Quote(v))
}

// argoInstanceLabel is Argo CD's default tracking label before its
// annotation tracking, app.kubernetes.io/instance, unless Helm set it (as
// every chart does).
func argoInstanceLabel(m ManagedObject) string {
	if m.Labels["app.kubernetes.io/managed-by"] == "Helm" || m.Annotations["meta.helm.sh/release-name"] != "" {
		return ""
	}
	return keyed("label", m.Labels, "app.kubernetes.io/instance", "")
}

func namespace(ns string) mark {
	return func(m ManagedObject) string {
		if m.Namespace != ns {
			return ""
		}
		return "namespace " + ns
	}
}

func ownerKind(kind string) mark {
	return func(m ManagedObject) string {
		if !slices.Contains(m.OwnerKinds, kind) {
			return ""
		}
		return "an ownerReference to a " + kind
	}
}

// Owner finds the first tool other than kvgitops that manages one of objs.
func Owner(objs []ManagedObject) (ForeignOwner, bool) {
	for _, o := range owners {
		for _, m := range objs {
			for _, mk := range o.marks {
				if ev := mk(m); ev != "" {
					return ForeignOwner{Tool: o.tool, Object: m.String(), Evidence: ev, Advice: o.advice}, true
				}
			}
		}
	}
	return ForeignOwner{}, false
}
