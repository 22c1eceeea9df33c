package release

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
)

// Violation is one way a manifest departs from what a KubeVirt release's
// kubevirt-operator.yaml may hold: the object, the field and what is wrong,
// with the offending value quoted.
type Violation struct {
	Object  string `json:"object"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (v Violation) String() string {
	if v.Field == "" {
		return v.Object + ": " + v.Message
	}
	return v.Object + " " + v.Field + ": " + v.Message
}

// VetOptions say what a manifest is checked against.
type VetOptions struct {
	// Namespace is KubeVirt's namespace. Default "kubevirt".
	Namespace string
	// Registries are where the virt-operator image may come from: a
	// registry path whose virt-operator repository is used
	// ("registry.example.com/kubevirt"), or a whole repository
	// ("registry.example.com/mirror/kv-operator"). Empty: the release's own
	// (quay.io/kubevirt; index.docker.io/kubevirt before v0.37).
	Registries []string
}

// Vetting is the verdict on one kubevirt-operator.yaml. It is accepted when
// it has no violations.
type Vetting struct {
	Tag        string
	Version    string // what the Deployment runs, read as virt-operator reads it
	SHA256     string
	Objects    []*unstructured.Unstructured
	Violations []Violation
}

// Accepted reports whether the manifest may be applied.
func (v *Vetting) Accepted() bool { return len(v.Violations) == 0 }

// Err is nil for an accepted manifest, else a terminal ManifestRejected
// that lists every violation.
func (v *Vetting) Err() error {
	if v.Accepted() {
		return nil
	}
	parts := make([]string, len(v.Violations))
	for i, x := range v.Violations {
		parts[i] = x.String()
	}
	noun := "violations"
	if len(parts) == 1 {
		noun = "violation"
	}
	return fault.Stalled(ReasonManifestRejected, nil, "kubevirt-operator.yaml of %s refused, %d %s: %s", v.Tag, len(parts), noun, strings.Join(parts, "; "))
}

// Manifest is the accepted manifest, or Err.
func (v *Vetting) Manifest() (*Manifest, error) {
	if err := v.Err(); err != nil {
		return nil, err
	}
	return &Manifest{Tag: v.Tag, Version: v.Version, SHA256: v.SHA256, Objects: v.Objects}, nil
}

// Vet checks kubevirt-operator.yaml of tag and reports every violation, not
// only the first. What it can and cannot protect is in docs/security.md:
// virt-operator is cluster-admin by design, so the vetting keeps the
// manifest to the objects and shape of a KubeVirt release (no extra objects,
// subjects, namespaces, containers, host access or privileges, the image
// from the release's registry at the release's version); provenance, pins
// and mirrors are what make it trustworthy.
func Vet(data []byte, tag string, o VetOptions) *Vetting {
	if o.Namespace == "" {
		o.Namespace = "kubevirt"
	}
	sum := sha256.Sum256(data)
	v := &Vetting{Tag: tag, SHA256: hex.EncodeToString(sum[:])}
	if !planner.ValidTag(tag) {
		v.add("release", "tag", "%s is not a release tag", redact.Quote(tag))
		return v
	}
	objs, err := decodeObjects(data)
	if err != nil {
		v.add("file", "", "%s", redact.Text(err.Error(), 300))
		return v
	}
	c := vetter{Vetting: v, opts: o, registries: o.Registries}
	if len(c.registries) == 0 {
		c.registries = releaseRegistries(tag)
	}
	seen := map[string]bool{}
	for i, obj := range objs {
		a, ok := c.allowed(i, obj)
		if !ok {
			continue
		}
		key := a.GVK.Kind + "/" + obj.GetName()
		if seen[key] {
			v.add(objectName(obj), "", "appears twice")
			continue
		}
		seen[key] = true
		v.Objects = append(v.Objects, obj)
		c.semantics(obj)
	}
	for _, want := range []string{"Deployment/virt-operator", "CustomResourceDefinition/kubevirts.kubevirt.io"} {
		if !seen[want] {
			kind, name, _ := strings.Cut(want, "/")
			v.add(kind+" "+name, "", "missing: every kubevirt-operator.yaml holds it")
		}
	}
	return v
}

// releaseRegistries are where a release's own images live: quay.io from
// v0.37.0, Docker Hub before (docs/kubevirt.md, "Release manifests").
func releaseRegistries(tag string) []string {
	if planner.TagAtLeast(tag, "v0.37.0-rc.0") {
		return []string{"quay.io/kubevirt"}
	}
	return []string{"index.docker.io/kubevirt", "docker.io/kubevirt"}
}

type vetter struct {
	*Vetting
	opts       VetOptions
	registries []string
}

func (v *Vetting) add(object, field, format string, args ...any) {
	v.Violations = append(v.Violations, Violation{Object: object, Field: field, Message: redact.Text(fmt.Sprintf(format, args...), 300)})
}

func objectName(o *unstructured.Unstructured) string {
	kind := o.GetKind()
	if kind == "" {
		kind = "object"
	}
	if ns := o.GetNamespace(); ns != "" {
		return kind + " " + ns + "/" + o.GetName()
	}
	return kind + " " + o.GetName()
}

// Kind is one entry of the allow-list of kubevirt-operator.yaml
// (docs/kubevirt.md, "Release manifests"): kind, name, and whether it lives
// in KubeVirt's namespace. The CRD may be apiextensions.k8s.io/v1beta1
// (releases before v0.40) or v1.
type Kind struct {
	GVK        schema.GroupVersionKind
	Resource   string
	Name       string // "" for the Namespace: it is named by VetOptions
	Namespaced bool
}

var (
	CRDv1      = schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}
	CRDv1beta1 = schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1beta1", Kind: "CustomResourceDefinition"}
)

var Kinds = []Kind{
	{schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, "namespaces", "", false},
	{CRDv1, "customresourcedefinitions", "kubevirts.kubevirt.io", false},
	{CRDv1beta1, "customresourcedefinitions", "kubevirts.kubevirt.io", false},
	{schema.GroupVersionKind{Group: "scheduling.k8s.io", Version: "v1", Kind: "PriorityClass"}, "priorityclasses", "kubevirt-cluster-critical", false},
	{schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}, "clusterroles", "kubevirt.io:operator", false},
	{schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}, "clusterroles", "kubevirt-operator", false},
	{schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"}, "clusterrolebindings", "kubevirt-operator", false},
	{schema.GroupVersionKind{Version: "v1", Kind: "ServiceAccount"}, "serviceaccounts", "kubevirt-operator", true},
	{schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"}, "roles", "kubevirt-operator", true},
	{schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"}, "rolebindings", "kubevirt-operator-rolebinding", true},
	{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, "deployments", "virt-operator", true},
}

// allowed finds obj on the allow-list, recording a violation when it is not
// there or sits in the wrong namespace.
func (c *vetter) allowed(i int, obj *unstructured.Unstructured) (Kind, bool) {
	gvk := obj.GroupVersionKind()
	name := obj.GetName()
	if gvk.Kind == "" || name == "" {
		c.add(fmt.Sprintf("document %d", i+1), "kind", "has no kind or no name")
		return Kind{}, false
	}
	for _, a := range Kinds {
		want := a.Name
		if a.GVK.Kind == "Namespace" {
			want = c.opts.Namespace
		}
		if a.GVK != gvk || name != want {
			continue
		}
		ns := obj.GetNamespace()
		switch {
		case a.Namespaced && ns != c.opts.Namespace:
			c.add(objectName(obj), "metadata.namespace", "must be %s, got %s", c.opts.Namespace, redact.Quote(ns))
			return a, false
		case !a.Namespaced && ns != "":
			c.add(objectName(obj), "metadata.namespace", "is cluster-scoped, got namespace %s", redact.Quote(ns))
			return a, false
		}
		return a, true
	}
	c.add(objectName(obj), "kind", "%s %s (%s) is not part of a KubeVirt operator manifest",
		redact.Quote(gvk.Kind), redact.Quote(name), redact.Quote(gvk.GroupVersion().String()))
	return Kind{}, false
}

func (c *vetter) semantics(o *unstructured.Unstructured) {
	switch o.GetKind() {
	case "CustomResourceDefinition":
		c.crd(o)
	case "PriorityClass":
		if g, _, _ := unstructured.NestedBool(o.Object, "globalDefault"); g {
			c.add(objectName(o), "globalDefault", "must not be true: every pod of the cluster would get KubeVirt's priority")
		}
	case "ClusterRole", "Role":
		c.rules(o)
	case "ClusterRoleBinding", "RoleBinding":
		c.binding(o)
	case "Deployment":
		c.deployment(o)
	}
}

func (c *vetter) crd(o *unstructured.Unstructured) {
	obj := objectName(o)
	spec, _, _ := unstructured.NestedMap(o.Object, "spec")
	group, _, _ := unstructured.NestedString(spec, "group")
	kind, _, _ := unstructured.NestedString(spec, "names", "kind")
	plural, _, _ := unstructured.NestedString(spec, "names", "plural")
	if group != "kubevirt.io" || kind != "KubeVirt" || plural != "kubevirts" {
		c.add(obj, "spec", "must define kubevirts.kubevirt.io (kind KubeVirt), got group %s kind %s plural %s",
			redact.Quote(group), redact.Quote(kind), redact.Quote(plural))
	}
	if s, _, _ := unstructured.NestedString(spec, "conversion", "strategy"); s != "" && s != "None" {
		c.add(obj, "spec.conversion.strategy", "must be None, got %s: a conversion webhook would send every KubeVirt CR elsewhere", redact.Quote(s))
	}
}

// kubevirtGroup reports whether a rule's API group is KubeVirt's own
// (kubevirt.io or a subdomain). Only there do genuine releases grant "*".
func KubeVirtGroup(g string) bool { return g == "kubevirt.io" || strings.HasSuffix(g, ".kubevirt.io") }

// dangerousVerbs let a subject grant or assume what it does not hold.
var dangerousVerbs = []string{"escalate", "bind", "impersonate"}

func (c *vetter) rules(o *unstructured.Unstructured) {
	obj := objectName(o)
	if _, ok := o.Object["aggregationRule"]; ok {
		c.add(obj, "aggregationRule", "must not be set: it would pull in the rules of other roles")
	}
	aggregate := o.GetKind() == "ClusterRole" && o.GetName() == "kubevirt.io:operator"
	rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
	for i, r := range rules {
		m, _ := r.(map[string]any)
		field := fmt.Sprintf("rules[%d]", i)
		groups, resources, verbs := strs(m["apiGroups"]), strs(m["resources"]), strs(m["verbs"])
		if slices.Contains(groups, "*") {
			c.add(obj, field+".apiGroups", `must not be "*"`)
		}
		for _, v := range verbs {
			if slices.Contains(dangerousVerbs, v) {
				c.add(obj, field+".verbs", "must not grant %s", redact.Quote(v))
			}
		}
		wild := slices.Contains(resources, "*") || slices.Contains(verbs, "*")
		if wild && !allFunc(groups, KubeVirtGroup) {
			c.add(obj, field, `grants "*" in %s; releases grant wildcards only in KubeVirt's own groups`, redact.Quote(strings.Join(groups, ",")))
		}
		if urls := strs(m["nonResourceURLs"]); len(urls) > 0 {
			if !slices.Equal(urls, []string{"/metrics"}) || !slices.Equal(verbs, []string{"get"}) {
				c.add(obj, field+".nonResourceURLs", "only get on /metrics is allowed, got %s on %s",
					redact.Quote(strings.Join(verbs, ",")), redact.Quote(strings.Join(urls, ",")))
			}
		}
		if aggregate && !slices.Equal(groups, []string{"kubevirt.io"}) {
			c.add(obj, field+".apiGroups", "this role is aggregated into every namespace admin: only kubevirt.io, got %s", redact.Quote(strings.Join(groups, ",")))
		}
	}
}

func (c *vetter) binding(o *unstructured.Unstructured) {
	obj := objectName(o)
	wantRole := map[string]string{"ClusterRoleBinding": "ClusterRole", "RoleBinding": "Role"}[o.GetKind()]
	kind, _, _ := unstructured.NestedString(o.Object, "roleRef", "kind")
	name, _, _ := unstructured.NestedString(o.Object, "roleRef", "name")
	if kind != wantRole || name != "kubevirt-operator" {
		c.add(obj, "roleRef", "must be %s kubevirt-operator, got %s %s", wantRole, redact.Quote(kind), redact.Quote(name))
	}
	subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
	if len(subjects) == 0 {
		c.add(obj, "subjects", "must name the kubevirt-operator ServiceAccount")
	}
	for i, s := range subjects {
		m, _ := s.(map[string]any)
		k, _ := m["kind"].(string)
		n, _ := m["name"].(string)
		ns, _ := m["namespace"].(string)
		if k != "ServiceAccount" || n != "kubevirt-operator" || ns != c.opts.Namespace {
			c.add(obj, fmt.Sprintf("subjects[%d]", i), "must be ServiceAccount %s/kubevirt-operator, got %s %s/%s",
				c.opts.Namespace, redact.Quote(k), redact.Quote(ns), redact.Quote(n))
		}
	}
}

func allFunc(l []string, f func(string) bool) bool {
	if len(l) == 0 {
		return false
	}
	for _, s := range l {
		if !f(s) {
			return false
		}
	}
	return true
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

// operatorArgs is virt-operator's command line in every release: the
// binary, its metrics port and a log verbosity (the one hole of the
// templator).
var operatorArgs = regexp.MustCompile(`^virt-operator --port 8443 -v [0-9]$`)
