//go:build realnode

package cluster

import (
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/test/testenv"
)

// TestDeployRendersWithKustomize: kustomize itself renders deploy/ with a
// user's overlay: the image pin, the config patched in, every namespaced
// object in kvgitops's namespace, KubeVirt's untouched by it.
func TestDeployRendersWithKustomize(t *testing.T) {
	kust := kustomization(t)
	data, err := kustomize(kust, map[string]string{"KVGITOPS_CLUSTER_NAME": "rendered"})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := testenv.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		if ns := o.GetNamespace(); ns != "" && ns != "kvgitops" {
			t.Errorf("%s %s rendered into namespace %s", o.GetKind(), o.GetName(), ns)
		}
	}
	if kinds["Deployment"] != 1 || kinds["ConfigMap"] != 1 || kinds["ValidatingAdmissionPolicy"] == 0 {
		t.Errorf("rendered kinds %v", kinds)
	}
	if !strings.Contains(string(data), "image: "+kust.image()) || !strings.Contains(string(data), "KVGITOPS_CLUSTER_NAME: rendered") {
		t.Errorf("the image pin or the config patch is missing:\n%s", data)
	}
}
