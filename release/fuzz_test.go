package release_test

import (
	"testing"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/release"
	"github.com/kvgitops/kvgitops/test/releases"
)

// FuzzManifest: any bytes either fail with a typed error or yield only
// allow-listed objects.
func FuzzManifest(f *testing.F) {
	f.Add(releases.OperatorManifest("v1.8.4"))
	f.Add(releases.OperatorManifest("v0.26.0"))
	f.Add([]byte("---\napiVersion: v1\nkind: redact.Secret\nmetadata: {name: x}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := release.ParseOperatorManifest(data, "v1.8.4", release.VetOptions{})
		if err != nil {
			if fault.ReasonOf(err) == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		for _, o := range m.Objects {
			switch o.GetKind() {
			case "Namespace", "CustomResourceDefinition", "PriorityClass", "ClusterRole", "ClusterRoleBinding",
				"ServiceAccount", "Role", "RoleBinding", "Deployment":
			default:
				t.Fatalf("accepted a %s", o.GetKind())
			}
		}
	})
}
