package simulator

import (
	"context"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kvgitops/kvgitops/test/releases"
)

// syncDeletion follows docs/kubevirt.md, "Deletion": Deleting, the workload CRDs first
// (cascading to every VM), then the components, then phase Deleted and only
// then the finalizer. Operators up to v0.26.0 leave virt-api's APIService
// and webhooks behind (docs/teardown.md).
func (s *Simulator) syncDeletion(ctx context.Context, kv *unstructured.Unstructured, op runningOperator) error {
	obj := kv.DeepCopy()
	status, _, _ := unstructured.NestedMap(obj.Object, "status")
	if status == nil {
		status = map[string]any{}
	}
	oldConds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	version, _ := status["observedKubeVirtVersion"].(string)
	phase, _ := status["phase"].(string)
	if phase != "Deleting" && phase != "Deleted" {
		status["phase"] = "Deleting"
		status["conditions"] = mergeConditions(oldConds, conditionsFor(deleting, condInput{op: op.version}), time.Now())
		if err := s.writeKV(ctx, kv, obj, status); err != nil {
			return err
		}
		s.mu.Lock()
		s.record(DeletionStarted, version, "", "Deletion was triggered")
		s.deletingSince = time.Now()
		s.mu.Unlock()
		return nil
	}
	s.mu.Lock()
	resume := s.deletingSince.Add(s.faults.deletion)
	s.mu.Unlock()
	if wait := time.Until(resume); wait > 0 {
		s.pokeAfter(wait)
		return nil
	}

	gone, err := s.deleteWorkloadCRDs(ctx, op.version)
	if err != nil || !gone {
		if err == nil {
			s.pokeAfter(50 * time.Millisecond)
		}
		return err
	}
	kept, err := s.deleteComponents(ctx, op.version)
	if err != nil {
		return err
	}
	if phase != "Deleted" {
		status["phase"] = "Deleted"
		if err := s.writeKV(ctx, kv, obj, status); err != nil {
			return err
		}
		return nil // the next pass removes the finalizer, as status is written first
	}
	var out []string // up to v1.8.x: kv.Finalizers = nil, whatever else was there
	if removesOnlyOwnFinalizer(op.version) {
		own := finalizerFor(op.version)
		out = slices.DeleteFunc(slices.Clone(obj.GetFinalizers()), func(f string) bool { return f == own || f == bareFinalizer })
	}
	obj.SetFinalizers(out)
	if _, err := s.dyn.Resource(kubevirtGVR).Namespace(obj.GetNamespace()).Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
		return err
	}
	s.mu.Lock()
	if len(kept) > 0 {
		s.record(LeftoversKept, version, "", "left behind: "+joinNames(kept))
	}
	s.record(FinalizerRemoved, version, "", "KubeVirt deleted")
	s.hops = map[string]*hop{}
	s.mu.Unlock()
	s.setVirtAPIUp(false)
	return nil
}

// CRDFinalizer is what the operator puts on the CRDs it deletes, from
// v0.50, and removes once their instances are gone (docs/kubevirt.md, "Deletion").
const CRDFinalizer = "kubevirt.io/virtOperatorFinalizer"

// managedCRDs are the CRDs of the install strategy the simulator creates.
var managedCRDs = []string{"virtualmachineinstances.kubevirt.io", "virtualmachines.kubevirt.io", "virtualmachineinstancemigrations.kubevirt.io"}

// deleteWorkloadCRDs deletes the managed CRDs first, which cascades to
// every VM and VMI; a VMI holds its CRD until it has shut down. From v0.50
// the operator finalizes the CRDs itself: it adds its finalizer, deletes
// them, waits until the apiserver reports every instance gone
// (Terminating=False InstanceDeletionCompleted) and then removes it. It
// reports whether the CRDs are gone.
func (s *Simulator) deleteWorkloadCRDs(ctx context.Context, op string) (bool, error) {
	dance := crdFinalizerDance(op)
	var present []*unstructured.Unstructured
	for _, name := range managedCRDs {
		crd, err := s.dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return false, err
		}
		present = append(present, crd)
	}
	if len(present) == 0 {
		return true, nil
	}
	completed := 0
	for _, crd := range present {
		if dance && crd.GetDeletionTimestamp() == nil && !slices.Contains(crd.GetFinalizers(), CRDFinalizer) {
			crd.SetFinalizers(append(crd.GetFinalizers(), CRDFinalizer))
			if _, err := s.dyn.Resource(crdGVR).Update(ctx, crd, metav1.UpdateOptions{}); err != nil {
				return false, err
			}
			continue // the next pass deletes it
		}
		if crd.GetDeletionTimestamp() == nil {
			if err := s.dyn.Resource(crdGVR).Delete(ctx, crd.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return false, err
			}
			continue
		}
		if instancesDeleted(crd) {
			completed++
		}
	}
	if dance && completed == len(present) {
		for _, crd := range present {
			crd.SetFinalizers(slices.DeleteFunc(crd.GetFinalizers(), func(f string) bool { return f == CRDFinalizer }))
			if _, err := s.dyn.Resource(crdGVR).Update(ctx, crd, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return false, err
			}
		}
		s.mu.Lock()
		s.record(CRDsDeleted, "", "", "instances of "+joinNames(managedCRDs)+" deleted; finalizer removed")
		s.mu.Unlock()
	}
	return false, nil
}

// instancesDeleted reads the apiserver's verdict on a deleted CRD.
func instancesDeleted(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Terminating" && m["status"] == "False" && m["reason"] == "InstanceDeletionCompleted" {
			return true
		}
	}
	return false
}

type named struct {
	gvr  schema.GroupVersionResource
	ns   string
	name string
}

// deleteComponents deletes in the operator's order and returns what an old
// operator leaves behind.
func (s *Simulator) deleteComponents(ctx context.Context, op string) ([]string, error) {
	ns := s.opts.Namespace
	objs := []named{
		{daemonSetGVR, ns, "virt-handler"},
		{deploymentGVR, ns, "virt-api"},
		{deploymentGVR, ns, "virt-controller"},
		{vwcGVR, "", "virt-operator-validator"},
	}
	var kept []string
	leftovers := []named{
		{vwcGVR, "", "virt-api-validator"},
		{mwcGVR, "", "virt-api-mutator"},
		{apiSvcGVR, "", "v1alpha3.subresources.kubevirt.io"},
		{apiSvcGVR, "", "v1.subresources.kubevirt.io"},
	}
	if leavesLeftovers(op) {
		for _, l := range leftovers {
			if _, err := s.dyn.Resource(l.gvr).Get(ctx, l.name, metav1.GetOptions{}); err == nil {
				kept = append(kept, l.name)
			}
		}
	} else {
		objs = append(objs, leftovers...)
	}
	objs = append(objs,
		named{serviceGVR, ns, "virt-api"},
		named{serviceGVR, ns, "kubevirt-operator-webhook"},
		named{roleGVR, "", releases.ComponentRoleName},
	)
	for _, o := range objs {
		err := s.dyn.Resource(o.gvr).Namespace(o.ns).Delete(ctx, o.name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
	}
	return kept, nil
}

func joinNames(ns []string) string {
	out := ""
	for i, n := range ns {
		if i > 0 {
			out += ", "
		}
		out += n
	}
	return out
}
