package releases

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// FromResourceGenerator runs the resource-generator of tag built in dir
// (hack/virt-operator.sh: dir/<tag>/resource-generator) and builds the
// tag's kubevirt-operator.yaml around its output (FromGenerated).
func FromResourceGenerator(dir, tag string) ([]byte, error) {
	gen := filepath.Join(dir, tag, "resource-generator")
	var out []byte
	for _, typ := range []string{"kv", "priorityclass", "operator-rbac"} {
		b, err := exec.Command(gen, "--type="+typ, "--namespace="+Namespace).Output()
		if err != nil {
			return nil, fmt.Errorf("resource-generator %s --type=%s: %w", tag, typ, err)
		}
		out = append(append(out, "\n---\n"...), b...)
	}
	return FromGenerated(tag, out)
}

// FromGenerated builds kubevirt-operator.yaml of tag around what KubeVirt's
// own resource-generator renders for it (the KubeVirt CRD, the
// PriorityClass and the operator's RBAC, from the tag's source): the
// Namespace, the aggregated kubevirt.io:operator role and the Deployment
// come from the synthesis, as the release template adds them. The
// real-operator lane uses it for tags without a genuine asset.
func FromGenerated(tag string, generated []byte) ([]byte, error) {
	byKind := map[string][]any{}
	for _, doc := range bytes.Split(generated, []byte("\n---")) {
		var o map[string]any
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, fmt.Errorf("resource-generator output: %w", err)
		}
		if len(o) == 0 {
			continue
		}
		kind, _ := o["kind"].(string)
		byKind[kind] = append(byKind[kind], o)
	}
	for _, k := range []string{"CustomResourceDefinition", "PriorityClass", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} {
		if len(byKind[k]) == 0 {
			return nil, fmt.Errorf("resource-generator output of %s has no %s", tag, k)
		}
	}
	objs := []any{namespace(tag)}
	objs = append(objs, byKind["CustomResourceDefinition"]...)
	objs = append(objs, byKind["PriorityClass"]...)
	objs = append(objs, role("ClusterRole", "kubevirt.io:operator", map[string]any{"operator.kubevirt.io": "", "rbac.authorization.k8s.io/aggregate-to-admin": "true"}, Rules(RoleAggregate, tag)))
	for _, k := range []string{"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} {
		objs = append(objs, byKind[k]...)
	}
	objs = append(objs, OperatorDeployment(tag))
	return render(objs), nil
}
