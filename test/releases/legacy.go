package releases

import (
	"bytes"

	"sigs.k8s.io/yaml"
)

// AsStoredSince122 is kubevirt-operator.yaml of tag as a cluster upgraded
// past Kubernetes 1.22 holds it: a release installed before that ships its
// KubeVirt CRD as apiextensions.k8s.io/v1beta1, which the apiserver kept as
// v1. Tests use it to stand up such a cluster (an old KubeVirt that can be
// torn down or moved by imageTag, but whose manifest can no longer be
// applied). Manifests already at v1 are returned as they are.
func AsStoredSince122(tag string) []byte {
	data := OperatorManifest(tag)
	if CRDv1(tag) {
		return data
	}
	var b bytes.Buffer
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var o map[string]any
		if err := yaml.Unmarshal(doc, &o); err != nil || len(o) == 0 {
			continue
		}
		if o["kind"] == "CustomResourceDefinition" && o["apiVersion"] == "apiextensions.k8s.io/v1beta1" {
			o = crdToV1(o)
		}
		out, _ := yaml.Marshal(o)
		b.WriteString("---\n")
		b.Write(out)
	}
	return b.Bytes()
}

// crdToV1 converts a v1beta1 CRD the way the apiserver's conversion does,
// with a schema that keeps every field (v1 requires one).
func crdToV1(o map[string]any) map[string]any {
	spec, _ := o["spec"].(map[string]any)
	out := map[string]any{"group": spec["group"], "names": spec["names"], "scope": spec["scope"]}
	versions, _ := spec["versions"].([]any)
	if len(versions) == 0 {
		versions = []any{map[string]any{"name": spec["version"], "served": true, "storage": true}}
	}
	var cols []any
	for _, c := range anySlice(spec["additionalPrinterColumns"]) {
		m, _ := c.(map[string]any)
		cols = append(cols, map[string]any{"jsonPath": m["JSONPath"], "name": m["name"], "type": m["type"]})
	}
	var vs []any
	for _, v := range versions {
		m, _ := v.(map[string]any)
		nv := map[string]any{"name": m["name"], "served": m["served"], "storage": m["storage"],
			"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
		if cols != nil {
			nv["additionalPrinterColumns"] = cols
		}
		if sub, ok := spec["subresources"]; ok {
			nv["subresources"] = sub
		}
		vs = append(vs, nv)
	}
	out["versions"] = vs
	return map[string]any{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": o["metadata"], "spec": out}
}

func anySlice(v any) []any { l, _ := v.([]any); return l }
