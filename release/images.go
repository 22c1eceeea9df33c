package release

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kvgitops/kvgitops/planner"
)

// Image is one container image a release needs, as its virt-operator
// names it.
type Image struct {
	// Component is the image's name without registry, prefix or version:
	// virt-operator, virt-api, …
	Component string `json:"component"`
	// Ref is the reference the operator pulls (registry/prefix+name
	// followed by :tag or @sha256:…).
	Ref string `json:"ref"`
	// Optional: the release runs without it unless a feature asks for it
	// (libguestfs-tools: virtctl guestfs only).
	Optional bool `json:"optional,omitempty"`
}

// component is an image virt-operator derives, since which release.
type component struct {
	name, env, since string
	optional         bool
}

// components are the images virt-operator derives from its own image
// (KubeVirt's pkg/virt-operator/util/config.go at each tag; docs/kubevirt.md,
// "Images of a release"): NAME_IMAGE overrides one (from v0.59.0),
// NAME_SHASUM pins it by digest when the operator itself is by digest.
var components = []component{
	{name: "virt-api", env: "VIRT_API", since: "v0.17.0"},
	{name: "virt-controller", env: "VIRT_CONTROLLER", since: "v0.17.0"},
	{name: "virt-handler", env: "VIRT_HANDLER", since: "v0.17.0"},
	{name: "virt-launcher", env: "VIRT_LAUNCHER", since: "v0.17.0"},
	{name: "libguestfs-tools", env: "GS", since: "v0.50.0", optional: true},
	{name: "virt-exportproxy", env: "VIRT_EXPORTPROXY", since: "v0.55.0"},
	{name: "virt-exportserver", env: "VIRT_EXPORTSERVER", since: "v0.55.0"},
	{name: "pr-helper", env: "PR_HELPER", since: "v1.0.0"},
	{name: "sidecar-shim", env: "SIDECAR_SHIM", since: "v1.3.0"},
	{name: "virt-synchronization-controller", env: "VIRT_SYNCHRONIZATIONCONTROLLER", since: "v1.6.0"},
	{name: "virt-template-apiserver", env: "VIRT_TEMPLATE_APISERVER", since: "v1.8.0"},
	{name: "virt-template-controller", env: "VIRT_TEMPLATE_CONTROLLER", since: "v1.8.0"},
}

// Images lists every image the release in m needs: its virt-operator and
// each component the operator of that release deploys, named as the
// operator derives them (its registry and prefix, its tag, or the
// component's digest when the operator is by digest and the release
// carries NAME_SHASUM; NAME_IMAGE where set).
func (m *Manifest) Images() ([]Image, error) {
	env, err := operatorContainerEnv(m.Objects)
	if err != nil {
		return nil, err
	}
	image := operatorImage(env)
	parts := operatorImageName.FindStringSubmatch(image)
	if parts == nil {
		return nil, fmt.Errorf("%s: virt-operator image %q does not end in virt-operator: its components cannot be derived", m.Tag, image)
	}
	registry, prefix, version := parts[1], parts[2], parts[3]
	byDigest := strings.HasPrefix(version, "@")
	if byDigest {
		version = ":" + orLatest(env["KUBEVIRT_VERSION"])
	}
	out := []Image{{Component: "virt-operator", Ref: image}}
	for _, c := range components {
		if !planner.TagAtLeast(m.Tag, c.since) {
			continue
		}
		ref := env[c.env+"_IMAGE"]
		if ref == "" {
			ref = registry + "/" + prefix + c.name + version
			if sum := env[c.env+"_SHASUM"]; byDigest && sum != "" {
				ref = registry + "/" + prefix + c.name + "@" + sum
			}
		}
		out = append(out, Image{Component: c.name, Ref: ref, Optional: c.optional})
	}
	return out, nil
}

// operatorContainerEnv is the virt-operator container's literal environment.
func operatorContainerEnv(objs []*unstructured.Unstructured) (map[string]string, error) {
	for _, o := range objs {
		if o.GetKind() != "Deployment" || o.GetName() != "virt-operator" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for _, ct := range containers {
			m, _ := ct.(map[string]any)
			if str(m["name"]) != "virt-operator" {
				continue
			}
			env := map[string]string{}
			list, _ := m["env"].([]any)
			for _, e := range list {
				em, _ := e.(map[string]any)
				env[str(em["name"])] = str(em["value"])
			}
			return env, nil
		}
	}
	return nil, fmt.Errorf("no virt-operator Deployment with a virt-operator container")
}
