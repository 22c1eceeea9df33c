package lane

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kvgitops/kvgitops/test/simulator"
)

var clusterInstancetypes = schema.GroupVersionResource{Group: "instancetype.kubevirt.io", Version: "v1beta1", Resource: "virtualmachineclusterinstancetypes"}

// enableInstancetypes turns KubeVirt's common instancetypes on in the CR,
// as the release's kubevirt-cr.yaml ships it, and waits for the real
// operator to deploy the cluster-wide instancetypes it bundles.
func enableInstancetypes(t *testing.T, w *world) {
	t.Helper()
	patch := []byte(`{"spec":{"configuration":{"commonInstancetypesDeployment":{"enabled":true}}}}`)
	if _, err := w.dyn.Resource(kvGVR).Namespace("kubevirt").Patch(t.Context(), "kubevirt", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	w.eventually(2*time.Minute, "the operator deploys the common instancetypes", func() bool { return instancetypes(w) > 0 })
	t.Logf("the real operator deployed %d common instancetypes", instancetypes(w))
	// The operator reconciles the CR again; it settles before the next step.
	w.eventually(2*time.Minute, "the CR available again", func() bool {
		return strings.Contains(simulator.State(w.kv(), "", ""), "Available=True/AllComponentsReady")
	})
}

// instancetypes counts the cluster-wide instancetypes; none when their
// CRD is gone.
func instancetypes(w *world) int {
	l, err := w.dyn.Resource(clusterInstancetypes).List(w.t.Context(), metav1.ListOptions{})
	if err != nil {
		return 0
	}
	return len(l.Items)
}
