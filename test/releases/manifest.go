package releases

import (
	"bytes"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// Namespace is where the release manifests put KubeVirt.
const Namespace = "kubevirt"

// OperatorManifest is kubevirt-operator.yaml of tag: the genuine asset when
// ../shared/real-manifests has it, else one synthesized in the era's real
// shape (see Synthesized).
func OperatorManifest(tag string) []byte {
	if data, ok := genuine()[tag]; ok {
		return data
	}
	return Synthesized(tag)
}

// Synthesized renders kubevirt-operator.yaml of tag era by era: the object
// set, the CRD's apiextensions version (v1beta1 before v0.40, which no
// apiserver since 1.22 serves) and served versions, the RBAC rules (with
// their wildcards) from testdata/rbac.tsv, and the Deployment with the
// image and env encoding of its time. TestSynthesizedEqualsGenuine proves
// it equal to every genuine asset in objects, rules, CRD versions and the
// Deployment's shape.
func Synthesized(tag string) []byte {
	objs := []any{namespace(tag), kubeVirtCRD(tag)}
	if AtLeast(tag, "v0.29.0-rc.0") {
		objs = append(objs, priorityClass())
	}
	objs = append(objs, role("ClusterRole", "kubevirt.io:operator", map[string]any{"operator.kubevirt.io": "", "rbac.authorization.k8s.io/aggregate-to-admin": "true"}, Rules(RoleAggregate, tag)),
		serviceAccount())
	if AtLeast(tag, "v0.29.0-rc.0") {
		objs = append(objs, role("Role", "kubevirt-operator", map[string]any{"kubevirt.io": ""}, Rules(RoleNamespaced, tag)),
			binding("RoleBinding", "kubevirt-operator-rolebinding", "Role"))
	}
	objs = append(objs, role("ClusterRole", "kubevirt-operator", map[string]any{"kubevirt.io": ""}, Rules(RoleOperator, tag)),
		binding("ClusterRoleBinding", "kubevirt-operator", "ClusterRole"), OperatorDeployment(tag))
	return render(objs)
}

// CRManifest renders kubevirt-cr.yaml for tag (docs/kubevirt.md, "Release manifests").
func CRManifest(tag string) []byte {
	spec := map[string]any{"imagePullPolicy": "IfNotPresent"}
	if AtLeast(tag, "v0.30.0-rc.0") {
		spec["certificateRotateStrategy"] = map[string]any{}
	}
	if AtLeast(tag, "v0.34.0-rc.0") {
		spec["configuration"] = map[string]any{}
		spec["customizeComponents"] = map[string]any{}
	}
	if AtLeast(tag, "v0.40.0-rc.0") {
		spec["configuration"] = map[string]any{"developerConfiguration": map[string]any{"featureGates": []any{}}}
		spec["workloadUpdateStrategy"] = map[string]any{}
	}
	return render([]any{map[string]any{
		"apiVersion": "kubevirt.io/" + CRAPIVersion(tag),
		"kind":       "KubeVirt",
		"metadata":   map[string]any{"name": "kubevirt", "namespace": Namespace},
		"spec":       spec,
	}})
}

// CRAPIVersion is the kubevirt.io version of the release's CR file.
func CRAPIVersion(tag string) string {
	if AtLeast(tag, "v0.37.0-rc.0") {
		return "v1"
	}
	return "v1alpha3"
}

func render(objs []any) []byte {
	var b bytes.Buffer
	for _, o := range objs {
		data, err := yaml.Marshal(o)
		if err != nil {
			panic(fmt.Sprintf("render fixture: %v", err))
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	return b.Bytes()
}

func meta(name, ns string, labels map[string]any) map[string]any {
	m := map[string]any{"name": name}
	if ns != "" {
		m["namespace"] = ns
	}
	if labels != nil {
		m["labels"] = labels
	}
	return m
}

func namespace(tag string) map[string]any {
	labels := map[string]any{"kubevirt.io": ""}
	if AtLeast(tag, "v0.58.0-rc.0") {
		labels["pod-security.kubernetes.io/enforce"] = "privileged"
	}
	return map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": meta(Namespace, "", labels)}
}

// kubeVirtCRD follows docs/kubevirt.md, "Release manifests": apiextensions v1beta1 before v0.40;
// v1alpha3 only until v0.36, v1 served from v0.37, v1 the storage version
// from v1.0.0-beta.0; a status subresource from v0.33. The schema is
// reduced to what the tests need.
func kubeVirtCRD(tag string) map[string]any {
	names := map[string]any{"kind": "KubeVirt", "listKind": "KubeVirtList", "plural": "kubevirts", "singular": "kubevirt", "shortNames": []any{"kv", "kvs"}}
	if AtLeast(tag, "v0.19.0-rc.0") {
		names["categories"] = []any{"all"}
	}
	type ver struct {
		name    string
		storage bool
	}
	vers := []ver{{"v1alpha3", true}}
	switch {
	case AtLeast(tag, "v1.0.0-beta.0"):
		vers = []ver{{"v1", true}, {"v1alpha3", false}}
	case AtLeast(tag, "v0.37.0-rc.0"):
		vers = []ver{{"v1", false}, {"v1alpha3", true}}
	}
	status := AtLeast(tag, "v0.33.0-rc.0")
	spec := map[string]any{"group": "kubevirt.io", "names": names, "scope": "Namespaced"}
	if !CRDv1(tag) {
		spec["version"] = vers[0].name
		spec["additionalPrinterColumns"] = []any{
			map[string]any{"JSONPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"},
			map[string]any{"JSONPath": ".status.phase", "name": "Phase", "type": "string"},
		}
		if status {
			spec["subresources"] = map[string]any{"status": map[string]any{}}
		}
		if AtLeast(tag, "v0.20.0") { // v0.17–v0.19 name the one version only
			var vs []any
			for _, v := range vers {
				vs = append(vs, map[string]any{"name": v.name, "served": true, "storage": v.storage})
			}
			spec["versions"] = vs
		}
		return map[string]any{"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "CustomResourceDefinition",
			"metadata": meta("kubevirts.kubevirt.io", "", map[string]any{"operator.kubevirt.io": ""}), "spec": spec}
	}
	schema := map[string]any{"openAPIV3Schema": map[string]any{
		"type": "object", "required": []any{"spec"},
		"properties": map[string]any{
			"spec":   map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
			"status": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
		},
	}}
	var vs []any
	for _, v := range vers {
		m := map[string]any{"name": v.name, "served": true, "storage": v.storage, "schema": schema,
			"additionalPrinterColumns": []any{
				map[string]any{"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"},
				map[string]any{"jsonPath": ".status.phase", "name": "Phase", "type": "string"},
			}}
		if status {
			m["subresources"] = map[string]any{"status": map[string]any{}}
		}
		if v.name == "v1alpha3" && AtLeast(tag, "v1.0.0-beta.0") {
			m["deprecated"] = true
			m["deprecationWarning"] = "kubevirt.io/v1alpha3 is now deprecated and will be removed in a future release."
		}
		vs = append(vs, m)
	}
	spec["versions"] = vs
	return map[string]any{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": meta("kubevirts.kubevirt.io", "", map[string]any{"operator.kubevirt.io": ""}), "spec": spec}
}

// CRDv1 reports whether the release ships its KubeVirt CRD as
// apiextensions.k8s.io/v1 (v0.40 on) rather than v1beta1.
func CRDv1(tag string) bool { return AtLeast(tag, "v0.40.0-rc.0") }

func priorityClass() map[string]any {
	return map[string]any{"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": meta("kubevirt-cluster-critical", "", nil),
		"value": int64(1000000000), "globalDefault": false, "description": "This priority class should be used for core kubevirt components only."}
}

func serviceAccount() map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("kubevirt-operator", Namespace, map[string]any{"kubevirt.io": ""})}
}

func role(kind, name string, labels map[string]any, rules []rbacv1.PolicyRule) map[string]any {
	ns := ""
	if kind == "Role" {
		ns = Namespace
	}
	rs := make([]any, 0, len(rules))
	for _, r := range rules {
		m := map[string]any{"verbs": toAny(r.Verbs)}
		if r.APIGroups != nil {
			m["apiGroups"] = toAny(r.APIGroups)
		}
		if r.Resources != nil {
			m["resources"] = toAny(r.Resources)
		}
		if r.ResourceNames != nil {
			m["resourceNames"] = toAny(r.ResourceNames)
		}
		if r.NonResourceURLs != nil {
			m["nonResourceURLs"] = toAny(r.NonResourceURLs)
		}
		rs = append(rs, m)
	}
	return map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta(name, ns, labels), "rules": rs}
}

func binding(kind, name, roleKind string) map[string]any {
	ns := ""
	if kind == "RoleBinding" {
		ns = Namespace
	}
	return map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta(name, ns, map[string]any{"kubevirt.io": ""}),
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": roleKind, "name": "kubevirt-operator"},
		"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": "kubevirt-operator", "namespace": Namespace}}}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
