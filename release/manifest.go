package release

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/redact"
)

// Manifest is a vetted release manifest.
type Manifest struct {
	Tag     string
	Version string // what its virt-operator runs (kubevirt-operator.yaml only)
	SHA256  string
	Objects []*unstructured.Unstructured
}

// maxObjects caps the documents of a manifest.
const maxObjects = 64

// decodeObjects splits a multi-document YAML (bounded) into objects.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	if len(data) > MaxManifestSize {
		return nil, fault.Stalled(ReasonTooLarge, nil, "manifest is %d bytes, over the %d-byte limit", len(data), MaxManifestSize)
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
			return nil, fault.Stalled(ReasonManifestRejected, nil, "manifest is not valid YAML: %s", redact.Text(err.Error(), 200))
		}
		if len(m) == 0 {
			continue
		}
		if len(out) == maxObjects {
			return nil, fault.Stalled(ReasonManifestRejected, nil, "manifest has more than %d objects", maxObjects)
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// parseOperatorManifest vets kubevirt-operator.yaml of tag (see [Vet]):
// the manifest when accepted, else a ManifestRejected listing every
// violation.
func parseOperatorManifest(data []byte, tag string, o VetOptions) (*Manifest, error) {
	return Vet(data, tag, o).Manifest()
}

// parseCRManifest vets kubevirt-cr.yaml: exactly one KubeVirt named
// "kubevirt" in the namespace.
func parseCRManifest(data []byte, tag, namespace string) (*Manifest, error) {
	objs, err := decodeObjects(data)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, fault.Stalled(ReasonManifestRejected, nil, "kubevirt-cr.yaml of %s has %d objects, want one KubeVirt", tag, len(objs))
	}
	o := objs[0]
	gvk := o.GroupVersionKind()
	if gvk.Group != "kubevirt.io" || gvk.Kind != "KubeVirt" || o.GetName() != "kubevirt" || o.GetNamespace() != namespace {
		return nil, fault.Stalled(ReasonManifestRejected, nil, "kubevirt-cr.yaml of %s holds %s %s/%s, want KubeVirt %s/kubevirt", tag,
			redact.Quote(gvk.Kind), redact.Quote(o.GetNamespace()), redact.Quote(o.GetName()), namespace)
	}
	if v, ok, _ := unstructured.NestedString(o.Object, "spec", "imageTag"); ok && v != "" {
		return nil, fault.Stalled(ReasonManifestRejected, nil, "kubevirt-cr.yaml of %s pins imageTag", tag)
	}
	if err := vetCRSpec(o, tag); err != nil {
		return nil, err
	}
	return &Manifest{Tag: tag, Objects: objs}, nil
}

// crSpecFields are what a release's kubevirt-cr.yaml sets, every one empty
// but imagePullPolicy (deploy/admission-policy.yaml admits the same).
var crSpecFields = []string{"imagePullPolicy", "certificateRotateStrategy", "configuration", "customizeComponents", "workloadUpdateStrategy"}

// vetCRSpec refuses a kubevirt-cr.yaml that sets more than a release's
// does: another registry, patched components, another uninstall strategy,
// feature gates.
func vetCRSpec(o *unstructured.Unstructured, tag string) error {
	spec, _, _ := unstructured.NestedMap(o.Object, "spec")
	var bad []string
	for _, k := range slices.Sorted(maps.Keys(spec)) {
		switch v := spec[k]; {
		case !slices.Contains(crSpecFields, k):
			bad = append(bad, "spec."+k+" is set")
		case k == "customizeComponents" && len(asMap(v)) > 0:
			bad = append(bad, "spec.customizeComponents patches KubeVirt's components")
		case k == "configuration" && !emptyConfiguration(asMap(v)):
			bad = append(bad, "spec.configuration sets more than empty feature gates and common instancetypes")
		}
	}
	if len(bad) > 0 {
		return fault.Stalled(ReasonManifestRejected, nil, "kubevirt-cr.yaml of %s holds what no release's does: %s", tag, strings.Join(bad, "; "))
	}
	return nil
}

// emptyConfiguration: no feature gate, and at most whether KubeVirt
// deploys its common instancetypes.
func emptyConfiguration(c map[string]any) bool {
	for k, v := range c {
		switch k {
		case "developerConfiguration":
			for dk, dv := range asMap(v) {
				if gates, _ := dv.([]any); dk != "featureGates" || len(gates) > 0 {
					return false
				}
			}
		case "commonInstancetypesDeployment":
			for ck := range asMap(v) {
				if ck != "enabled" {
					return false
				}
			}
		default:
			return false
		}
	}
	return true
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}
