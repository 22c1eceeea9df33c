package simulator

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func (s *Simulator) operatorUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.op.running != nil
}

// virtAPIUp: virt-api serves its webhooks once an install made it ready,
// and only while its Deployment exists (deleting KubeVirt's namespace by
// hand takes it away; its fail-closed webhooks stay behind).
func (s *Simulator) virtAPIUp() bool {
	s.mu.Lock()
	up := s.virtAPI
	s.mu.Unlock()
	if !up {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dep, err := s.kube.AppsV1().Deployments(s.opts.Namespace).Get(ctx, "virt-api", metav1.GetOptions{})
	return err == nil && dep.DeletionTimestamp == nil
}

func (s *Simulator) setVirtAPIUp(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.virtAPI = up
}

// countResource counts objects of gvr in every namespace, 0 when the
// resource does not exist.
func (s *Simulator) countResource(ctx context.Context, gvr schema.GroupVersionResource) int {
	l, err := s.dyn.Resource(gvr).Namespace("").List(ctx, metav1.ListOptions{Limit: 2})
	if err != nil {
		return 0
	}
	return len(l.Items)
}

// markExisting sets Synchronized=False ExistingDeployment on a CR the
// operator ignores (docs/kubevirt.md, "The KubeVirt CR").
func (s *Simulator) markExisting(ctx context.Context, kv *unstructured.Unstructured) error {
	obj := kv.DeepCopy()
	status, _, _ := unstructured.NestedMap(obj.Object, "status")
	if status == nil {
		status = map[string]any{}
	}
	old, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	want := []cond{{"Synchronized", "False", "ExistingDeployment", "There is an active KubeVirt deployment"}}
	for _, c := range old { // the other conditions stay as they were: only Synchronized is set
		m, _ := c.(map[string]any)
		if t, _ := m["type"].(string); t != "Synchronized" {
			st, _ := m["status"].(string)
			r, _ := m["reason"].(string)
			msg, _ := m["message"].(string)
			want = append(want, cond{t, st, r, msg})
		}
	}
	status["conditions"] = mergeConditions(old, want, time.Now())
	if !hasCondition(old, "Synchronized", "ExistingDeployment") {
		s.mu.Lock()
		s.record(ExistingDeployment, "", "", kv.GetNamespace()+"/"+kv.GetName())
		s.mu.Unlock()
	}
	return s.writeKV(ctx, kv, obj, status)
}

func hasCondition(conds []any, typ, reason string) bool {
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ && m["reason"] == reason {
			return true
		}
	}
	return false
}
