package simulator

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// CreateVMI creates a running VMI, as a user and virt-handler together
// would. The VMI CRD exists once KubeVirt is installed.
func (s *Simulator) CreateVMI(ctx context.Context, ns, name string) (types.UID, error) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1alpha3", "kind": "VirtualMachineInstance",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"domain": map[string]any{"devices": map[string]any{}}},
		"status":   map[string]any{"phase": "Running"},
	}}
	got, err := s.dyn.Resource(vmiGVR).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create VMI %s/%s: %w", ns, name, err)
	}
	return got.GetUID(), nil
}

// disruptVMIs restarts the VMIs a fault names when a hop rolls out: a new
// UID, as if the VM had been restarted by the update.
func (s *Simulator) disruptVMIs(ctx context.Context, h *hop) error {
	s.mu.Lock()
	targets := s.faults.disrupt
	s.faults.disrupt = nil
	s.mu.Unlock()
	for _, t := range targets {
		ns, name, _ := strings.Cut(t, "/")
		err := s.dyn.Resource(vmiGVR).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if _, err := s.CreateVMI(ctx, ns, name); err != nil {
			return err
		}
		s.mu.Lock()
		s.record(VMIDisrupted, h.from, h.to, "VMI "+t+" restarted during the update")
		s.mu.Unlock()
	}
	return nil
}
