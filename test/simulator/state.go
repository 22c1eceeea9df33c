package simulator

import (
	"context"
	"sort"
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

func (s *Simulator) virtAPIUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.virtAPI
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

// pickActive returns the CR the operator serves (the oldest one in its
// namespace) and the others it reports as ExistingDeployment.
func pickActive(items []unstructured.Unstructured, ns string) (*unstructured.Unstructured, []unstructured.Unstructured) {
	sort.SliceStable(items, func(i, j int) bool {
		return items[i].GetCreationTimestamp().Time.Before(items[j].GetCreationTimestamp().Time)
	})
	var active *unstructured.Unstructured
	var others []unstructured.Unstructured
	for i := range items {
		if active == nil && items[i].GetNamespace() == ns {
			active = &items[i]
			continue
		}
		others = append(others, items[i])
	}
	return active, others
}

// markExisting sets Synchronized=False ExistingDeployment on a CR the
// operator ignores (FACTS.md §1.1).
func (s *Simulator) markExisting(ctx context.Context, kv *unstructured.Unstructured) error {
	obj := kv.DeepCopy()
	status, _, _ := unstructured.NestedMap(obj.Object, "status")
	if status == nil {
		status = map[string]any{}
	}
	old, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	status["conditions"] = mergeConditions(old, []cond{{"Synchronized", "False", "ExistingDeployment", "There is an active KubeVirt deployment"}}, time.Now())
	if len(old) == 0 {
		s.mu.Lock()
		s.record(ExistingDeployment, "", "", kv.GetNamespace()+"/"+kv.GetName())
		s.mu.Unlock()
	}
	return s.writeKV(ctx, kv, obj, status)
}
