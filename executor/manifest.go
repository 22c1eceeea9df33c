package executor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/kvgitops/kvgitops/planner"
)

// Manifest is a vetted release manifest.
type Manifest struct {
	Tag     string
	SHA256  string
	Objects []*unstructured.Unstructured
}

// maxObjects caps the documents of a manifest.
const maxObjects = 64

// allowedObject is one entry of the allow-list of kubevirt-operator.yaml
// (FACTS.md §3.1): kind, name, and whether it lives in KubeVirt's namespace.
type allowedObject struct {
	gvk        schema.GroupVersionKind
	resource   string
	name       string
	namespaced bool
}

var operatorAllowList = []allowedObject{
	{schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, "namespaces", "", false}, // name = the namespace
	{schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}, "customresourcedefinitions", "kubevirts.kubevirt.io", false},
	{schema.GroupVersionKind{Group: "scheduling.k8s.io", Version: "v1", Kind: "PriorityClass"}, "priorityclasses", "kubevirt-cluster-critical", false},
	{schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}, "clusterroles", "kubevirt.io:operator", false},
	{schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}, "clusterroles", "kubevirt-operator", false},
	{schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"}, "clusterrolebindings", "kubevirt-operator", false},
	{schema.GroupVersionKind{Version: "v1", Kind: "ServiceAccount"}, "serviceaccounts", "kubevirt-operator", true},
	{schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"}, "roles", "kubevirt-operator", true},
	{schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"}, "rolebindings", "kubevirt-operator-rolebinding", true},
	{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, "deployments", "virt-operator", true},
}

// decodeObjects splits a multi-document YAML (bounded) into objects.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	if len(data) > MaxManifestSize {
		return nil, terminal(ReasonTooLarge, nil, "manifest is %d bytes, over the %d-byte limit", len(data), MaxManifestSize)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, terminal(ReasonManifestRejected, nil, "manifest is not valid YAML: %s", planner.Sanitize(err.Error(), 200))
		}
		if len(m) == 0 {
			continue
		}
		if len(out) == maxObjects {
			return nil, terminal(ReasonManifestRejected, nil, "manifest has more than %d objects", maxObjects)
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// ParseOperatorManifest vets kubevirt-operator.yaml of tag: every object must
// be on the allow-list (kind, name, namespace), appear once, and pass the
// semantic checks; anything else refuses the whole manifest.
func ParseOperatorManifest(data []byte, tag, namespace string) (*Manifest, error) {
	objs, err := decodeObjects(data)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, o := range objs {
		a, err := allowed(o, namespace)
		if err != nil {
			return nil, terminal(ReasonManifestRejected, nil, "kubevirt-operator.yaml of %s, object %d: %v", tag, i+1, err)
		}
		key := a.gvk.Kind + "/" + o.GetName()
		if seen[key] {
			return nil, terminal(ReasonManifestRejected, nil, "kubevirt-operator.yaml of %s: %s appears twice", tag, key)
		}
		seen[key] = true
		if err := checkSemantics(o, tag, namespace); err != nil {
			return nil, terminal(ReasonManifestRejected, nil, "kubevirt-operator.yaml of %s: %s %s: %v", tag, a.gvk.Kind, o.GetName(), err)
		}
	}
	if !seen["Deployment/virt-operator"] || !seen["CustomResourceDefinition/kubevirts.kubevirt.io"] {
		return nil, terminal(ReasonManifestRejected, nil, "kubevirt-operator.yaml of %s lacks the virt-operator Deployment or the KubeVirt CRD", tag)
	}
	return &Manifest{Tag: tag, Objects: objs}, nil
}

func allowed(o *unstructured.Unstructured, namespace string) (allowedObject, error) {
	gvk := o.GroupVersionKind()
	for _, a := range operatorAllowList {
		if a.gvk != gvk {
			continue
		}
		name := a.name
		if a.gvk.Kind == "Namespace" {
			name = namespace
		}
		if o.GetName() != name {
			continue
		}
		switch {
		case a.namespaced && o.GetNamespace() != namespace:
			return a, fmt.Errorf("%s %s must be in namespace %s, not %s", gvk.Kind, o.GetName(), namespace, planner.QuoteValue(o.GetNamespace()))
		case !a.namespaced && o.GetNamespace() != "":
			return a, fmt.Errorf("%s %s is cluster-scoped but names namespace %s", gvk.Kind, o.GetName(), planner.QuoteValue(o.GetNamespace()))
		}
		return a, nil
	}
	return allowedObject{}, fmt.Errorf("%s %s (%s) is not allowed in a KubeVirt operator manifest",
		planner.QuoteValue(gvk.Kind), planner.QuoteValue(o.GetName()), planner.QuoteValue(gvk.GroupVersion().String()))
}

// forbiddenVerbs let a role grant what it does not hold.
var forbiddenVerbs = []string{"escalate", "bind", "impersonate", "*"}

// checkSemantics catches expected kinds with hostile content (B24).
func checkSemantics(o *unstructured.Unstructured, tag, namespace string) error {
	switch o.GetKind() {
	case "ClusterRole", "Role":
		rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
		for i, r := range rules {
			m, _ := r.(map[string]any)
			groups, resources, verbs := strs(m["apiGroups"]), strs(m["resources"]), strs(m["verbs"])
			if slices.Contains(groups, "*") || slices.Contains(resources, "*") {
				return fmt.Errorf("rule %d grants a wildcard group or resource", i+1)
			}
			for _, v := range verbs {
				if slices.Contains(forbiddenVerbs, v) {
					return fmt.Errorf("rule %d grants the verb %s", i+1, planner.QuoteValue(v))
				}
			}
			if _, ok := m["nonResourceURLs"]; ok {
				return fmt.Errorf("rule %d grants non-resource URLs", i+1)
			}
		}
		if _, ok := o.Object["aggregationRule"]; ok {
			return errors.New("aggregation rules are not allowed")
		}
	case "ClusterRoleBinding", "RoleBinding":
		wantRole := map[string]string{"ClusterRoleBinding": "ClusterRole", "RoleBinding": "Role"}[o.GetKind()]
		ref, _, _ := unstructured.NestedMap(o.Object, "roleRef")
		if ref["kind"] != wantRole || ref["name"] != "kubevirt-operator" {
			return fmt.Errorf("binds %v %v, want %s kubevirt-operator", ref["kind"], planner.QuoteValue(fmt.Sprint(ref["name"])), wantRole)
		}
		subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
		if len(subjects) != 1 {
			return fmt.Errorf("has %d subjects, want only the kubevirt-operator ServiceAccount", len(subjects))
		}
		s, _ := subjects[0].(map[string]any)
		if s["kind"] != "ServiceAccount" || s["name"] != "kubevirt-operator" || s["namespace"] != namespace {
			return fmt.Errorf("binds %v %v, want ServiceAccount %s/kubevirt-operator", s["kind"], planner.QuoteValue(fmt.Sprint(s["name"])), namespace)
		}
	case "Deployment":
		return checkOperatorDeployment(o, tag)
	}
	return nil
}

func checkOperatorDeployment(o *unstructured.Unstructured, tag string) error {
	pod, _, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec")
	for _, f := range []string{"hostNetwork", "hostPID", "hostIPC"} {
		if v, _ := pod[f].(bool); v {
			return fmt.Errorf("sets %s", f)
		}
	}
	if _, ok := pod["initContainers"]; ok {
		return errors.New("has init containers")
	}
	containers, _, _ := unstructured.NestedSlice(pod, "containers")
	if len(containers) != 1 {
		return fmt.Errorf("has %d containers, want the virt-operator container only", len(containers))
	}
	c, _ := containers[0].(map[string]any)
	if c["name"] != "virt-operator" {
		return fmt.Errorf("container is %s, want virt-operator", planner.QuoteValue(fmt.Sprint(c["name"])))
	}
	if sc, ok := c["securityContext"].(map[string]any); ok {
		if p, _ := sc["privileged"].(bool); p {
			return errors.New("runs privileged")
		}
	}
	volumes, _, _ := unstructured.NestedSlice(pod, "volumes")
	for _, v := range volumes {
		if m, _ := v.(map[string]any); m["hostPath"] != nil {
			return errors.New("mounts a hostPath volume")
		}
	}
	image, _ := c["image"].(string)
	env := map[string]string{}
	list, _, _ := unstructured.NestedSlice(c, "env")
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			if n, _ := m["name"].(string); n != "" {
				v, _ := m["value"].(string)
				env[n] = v
			}
		}
	}
	version, _ := OperatorImageVersion(image, env)
	if version != tag {
		return fmt.Errorf("image %s carries version %s, want %s", planner.QuoteValue(image), planner.QuoteValue(version), tag)
	}
	if repo, _, _ := strings.Cut(strings.Split(image, "@")[0], ":"); !strings.HasSuffix(repo, "/virt-operator") {
		return fmt.Errorf("image %s is not a virt-operator image", planner.QuoteValue(image))
	}
	return nil
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// OperatorImageVersion reads the KubeVirt version a virt-operator image runs,
// as the operator does (FACTS.md §1.4): the image tag; for an image by digest
// the KUBEVIRT_VERSION env; otherwise "latest". It also returns the
// registry.
func OperatorImageVersion(image string, env map[string]string) (version, registry string) {
	repo := image
	if at := strings.Index(repo, "@"); at >= 0 {
		repo = repo[:at]
		if v := env["KUBEVIRT_VERSION"]; v != "" {
			return v, registryOf(repo)
		}
		return "latest", registryOf(repo)
	}
	if colon := strings.LastIndex(repo, ":"); colon > strings.LastIndex(repo, "/") {
		return repo[colon+1:], registryOf(repo[:colon])
	}
	if v := env["KUBEVIRT_VERSION"]; v != "" {
		return v, registryOf(repo)
	}
	return "latest", registryOf(repo)
}

func registryOf(repo string) string {
	if i := strings.LastIndex(repo, "/"); i >= 0 {
		return repo[:i]
	}
	return ""
}

// ParseCRManifest vets kubevirt-cr.yaml: exactly one KubeVirt named
// "kubevirt" in the namespace.
func ParseCRManifest(data []byte, tag, namespace string) (*Manifest, error) {
	objs, err := decodeObjects(data)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, terminal(ReasonManifestRejected, nil, "kubevirt-cr.yaml of %s has %d objects, want one KubeVirt", tag, len(objs))
	}
	o := objs[0]
	gvk := o.GroupVersionKind()
	if gvk.Group != "kubevirt.io" || gvk.Kind != "KubeVirt" || o.GetName() != "kubevirt" || o.GetNamespace() != namespace {
		return nil, terminal(ReasonManifestRejected, nil, "kubevirt-cr.yaml of %s holds %s %s/%s, want KubeVirt %s/kubevirt", tag,
			planner.QuoteValue(gvk.Kind), planner.QuoteValue(o.GetNamespace()), planner.QuoteValue(o.GetName()), namespace)
	}
	if v, ok, _ := unstructured.NestedString(o.Object, "spec", "imageTag"); ok && v != "" {
		return nil, terminal(ReasonManifestRejected, nil, "kubevirt-cr.yaml of %s pins imageTag", tag)
	}
	return &Manifest{Tag: tag, Objects: objs}, nil
}
