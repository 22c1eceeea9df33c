package simulator

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// What virt-controller puts on VMIs (docs/kubevirt.md, "Workload updates").
const (
	// OutdatedLabel marks a VMI whose virt-launcher is older than the
	// install.
	OutdatedLabel = "kubevirt.io/outdatedLauncherImage"
	// VMIFinalizer holds a deleted VMI until its domain has shut down.
	VMIFinalizer = "foregroundDeleteVirtualMachine"
)

func launcherImage(registry, version string) string { return registry + "/virt-launcher:" + version }

// CreateVMI creates a running VMI on the current install's virt-launcher,
// as a user, virt-controller and virt-handler together would. The VMI CRD
// exists once KubeVirt is installed.
func (s *Simulator) CreateVMI(ctx context.Context, ns, name string) (types.UID, error) {
	launcher := ""
	if kvs, err := s.dyn.Resource(kubevirtGVR).Namespace(s.opts.Namespace).List(ctx, metav1.ListOptions{}); err == nil && len(kvs.Items) > 0 {
		reg, _, _ := unstructured.NestedString(kvs.Items[0].Object, "status", "observedKubeVirtRegistry")
		ver, _, _ := unstructured.NestedString(kvs.Items[0].Object, "status", "observedKubeVirtVersion")
		launcher = launcherImage(reg, ver)
	}
	return s.createVMI(ctx, ns, name, launcher)
}

func (s *Simulator) createVMI(ctx context.Context, ns, name, launcher string) (types.UID, error) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1alpha3", "kind": "VirtualMachineInstance",
		"metadata": map[string]any{"name": name, "namespace": ns, "finalizers": []any{VMIFinalizer}},
		"spec":     map[string]any{"domain": map[string]any{"devices": map[string]any{}}},
		"status":   map[string]any{"phase": "Running", "launcherContainerImageVersion": launcher},
	}}
	got, err := s.dyn.Resource(vmiGVR).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create VMI %s/%s: %w", ns, name, err)
	}
	return got.GetUID(), nil
}

// syncWorkloads is virt-controller's workload updater, run once an install
// is Deployed with matching deployment ids: VMIs on another virt-launcher
// carry OutdatedLabel and are moved to current by live migration or
// eviction, per the CR's workloadUpdateMethods (none: they stay outdated
// until restarted). It returns how many are outdated, for
// status.outdatedVirtualMachineInstanceWorkloads.
func (s *Simulator) syncWorkloads(ctx context.Context, current string, methods []string) (int, error) {
	list, err := s.dyn.Resource(vmiGVR).Namespace("").List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	items := list.Items
	sort.Slice(items, func(i, j int) bool {
		return items[i].GetNamespace()+"/"+items[i].GetName() < items[j].GetNamespace()+"/"+items[j].GetName()
	})
	now := time.Now()
	outdated := 0
	for i := range items {
		vmi := &items[i]
		if vmi.GetDeletionTimestamp() != nil {
			continue
		}
		launcher, _, _ := unstructured.NestedString(vmi.Object, "status", "launcherContainerImageVersion")
		if launcher == current {
			if err := s.setOutdated(ctx, vmi, false); err != nil {
				return 0, err
			}
			continue
		}
		outdated++
		if err := s.setOutdated(ctx, vmi, true); err != nil {
			return 0, err
		}
		moved, err := s.moveVMI(ctx, vmi, current, methods, now)
		if err != nil {
			return 0, err
		}
		if moved {
			outdated--
		}
	}
	return outdated, nil
}

// moveVMI starts or finishes moving one VMI to the current launcher.
func (s *Simulator) moveVMI(ctx context.Context, vmi *unstructured.Unstructured, current string, methods []string, now time.Time) (bool, error) {
	key := vmi.GetNamespace() + "/" + vmi.GetName()
	migrate, evict := slices.Contains(methods, "LiveMigrate"), slices.Contains(methods, "Evict")
	if !migrate && !evict {
		return false, nil
	}
	uid := string(vmi.GetUID())
	s.mu.Lock()
	started, ok := s.migrations[uid]
	failing := s.faults.failMigration[key] && migrate
	slow := s.faults.slowMigration
	if !ok {
		s.migrations[uid] = now
		started = now
		if failing {
			s.record(MigrationFailed, "", current, "live migration of "+key+" failed; it stays on its old virt-launcher")
		}
	}
	s.mu.Unlock()
	if failing {
		return false, nil
	}
	if due := started.Add(s.opts.MigrationDelay + slow); now.Before(due) {
		s.pokeAfter(due.Sub(now))
		return false, nil
	}
	if migrate {
		// A live migration moves the guest to a new pod: same VMI, same UID.
		obj := vmi.DeepCopy()
		_ = unstructured.SetNestedField(obj.Object, current, "status", "launcherContainerImageVersion")
		labels := obj.GetLabels()
		delete(labels, OutdatedLabel)
		obj.SetLabels(labels)
		if _, err := s.dyn.Resource(vmiGVR).Namespace(obj.GetNamespace()).Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
			return false, err
		}
		s.mu.Lock()
		delete(s.migrations, uid)
		s.record(VMIMigrated, "", current, key+" live-migrated to "+current)
		s.mu.Unlock()
		return true, nil
	}
	// Eviction restarts the guest: its VM creates a new VMI (new UID).
	if err := s.dyn.Resource(vmiGVR).Namespace(vmi.GetNamespace()).Delete(ctx, vmi.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return false, err
	}
	if err := s.waitVMIGone(ctx, vmi); err != nil {
		return false, err
	}
	if _, err := s.createVMI(ctx, vmi.GetNamespace(), vmi.GetName(), current); err != nil {
		return false, err
	}
	s.mu.Lock()
	delete(s.migrations, uid)
	s.record(VMIEvicted, "", current, key+" evicted and restarted on "+current)
	s.mu.Unlock()
	return true, nil
}

// waitVMIGone drops the finalizer of an evicted VMI (virt-handler shut its
// domain down) and waits until it is gone.
func (s *Simulator) waitVMIGone(ctx context.Context, vmi *unstructured.Unstructured) error {
	r := s.dyn.Resource(vmiGVR).Namespace(vmi.GetNamespace())
	for attempt := 0; attempt < 100; attempt++ {
		cur, err := r.Get(ctx, vmi.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) || err == nil && cur.GetUID() != vmi.GetUID() {
			return nil
		}
		if err != nil {
			return err
		}
		if len(cur.GetFinalizers()) > 0 {
			cur.SetFinalizers(nil)
			if _, err := r.Update(ctx, cur, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				return err
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("VMI %s/%s was not deleted", vmi.GetNamespace(), vmi.GetName())
}

func (s *Simulator) setOutdated(ctx context.Context, vmi *unstructured.Unstructured, outdated bool) error {
	labels := vmi.GetLabels()
	if _, has := labels[OutdatedLabel]; has == outdated {
		return nil
	}
	if labels == nil {
		labels = map[string]string{}
	}
	if outdated {
		labels[OutdatedLabel] = ""
	} else {
		delete(labels, OutdatedLabel)
	}
	vmi.SetLabels(labels)
	updated, err := s.dyn.Resource(vmiGVR).Namespace(vmi.GetNamespace()).Update(ctx, vmi, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	*vmi = *updated
	return nil
}

// syncVMIDeletions shuts deleted VMIs down: while virt-controller runs, a
// deleted VMI loses its finalizer after VMIShutdownDelay; without it, the
// VMI stays Terminating, as in a real cluster.
func (s *Simulator) syncVMIDeletions(ctx context.Context) error {
	s.mu.Lock()
	hold := s.faults.holdShutdown
	s.mu.Unlock()
	if !s.virtAPIUp() || hold {
		return nil
	}
	list, err := s.dyn.Resource(vmiGVR).Namespace("").List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	now := time.Now()
	for i := range list.Items {
		vmi := &list.Items[i]
		if vmi.GetDeletionTimestamp() == nil || !slices.Contains(vmi.GetFinalizers(), VMIFinalizer) {
			continue
		}
		uid := string(vmi.GetUID())
		s.mu.Lock()
		seen, ok := s.shutdowns[uid]
		if !ok {
			s.shutdowns[uid], seen = now, now
		}
		s.mu.Unlock()
		if due := seen.Add(s.opts.VMIShutdownDelay); now.Before(due) {
			s.pokeAfter(due.Sub(now))
			continue
		}
		vmi.SetFinalizers(slices.DeleteFunc(vmi.GetFinalizers(), func(f string) bool { return f == VMIFinalizer }))
		if _, err := s.dyn.Resource(vmiGVR).Namespace(vmi.GetNamespace()).Update(ctx, vmi, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return err
		}
		s.mu.Lock()
		delete(s.shutdowns, uid)
		s.mu.Unlock()
	}
	return nil
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
		vmi, err := s.dyn.Resource(vmiGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		launcher, _, _ := unstructured.NestedString(vmi.Object, "status", "launcherContainerImageVersion")
		if err := s.dyn.Resource(vmiGVR).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err := s.waitVMIGone(ctx, vmi); err != nil {
			return err
		}
		if _, err := s.createVMI(ctx, ns, name, launcher); err != nil {
			return err
		}
		s.mu.Lock()
		s.record(VMIDisrupted, h.from, h.to, "VMI "+t+" restarted during the update")
		s.mu.Unlock()
	}
	return nil
}
