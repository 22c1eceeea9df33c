package lane

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kvgitops/kvgitops/agent"
)

// TestRealOperatorCommonInstancetypes is the one scenario with KubeVirt's
// common instancetypes on (the release's kubevirt-cr.yaml as published):
// the agent installs the newest tag, the real operator deploys the
// cluster-wide instancetypes and preferences it bundles, and state Absent
// removes them with the rest.
func TestRealOperatorCommonInstancetypes(t *testing.T) {
	w := setup(t, true)
	tag := lane.tags[len(lane.tags)-1]
	ctx := t.Context()
	w.commit("  version: "+tag+"\n", "install with common instancetypes")
	w.agent()
	w.succeeded(tag)
	instancetypes := schema.GroupVersionResource{Group: "instancetype.kubevirt.io", Version: "v1beta1", Resource: "virtualmachineclusterinstancetypes"}
	count := func() int {
		l, err := w.dyn.Resource(instancetypes).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0
		}
		return len(l.Items)
	}
	w.eventually(2*time.Minute, "the operator deploys the common instancetypes", func() bool { return count() > 0 })
	t.Logf("virt-operator %s deployed %d common instancetypes", tag, count())

	w.commit("  state: Absent\n", "remove KubeVirt")
	w.wait("KubeVirt absent", 4*time.Minute, func(s agent.Status) bool {
		return s.Phase == agent.PhaseSucceeded && s.Desired != nil && s.Desired.State == "Absent"
	})
	if left := kubevirtObjects(context.Background(), w.dyn); len(left) != 0 {
		t.Errorf("after the teardown: %v", left)
	}
	if n := count(); n != 0 {
		t.Errorf("%d common instancetypes left after the teardown", n)
	}
}
