package simulator

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// updateData is the workload updater's view of a pass (virt-controller's
// getUpdateData): every outdated running VMI, and which of them it may act
// on now.
type updateData struct {
	outdated  int
	migrate   []*unstructured.Unstructured
	evict     []*unstructured.Unstructured
	relabel   []*unstructured.Unstructured
	migrating int
}

// syncUpdater is virt-controller's workload updater (v0.39+), once the
// install is Deployed and observed = target: it labels VMIs on another
// virt-launcher, writes their count to the CR, starts live migrations of
// the migratable ones (LiveMigrate listed) up to parallelMigrationsPerCluster
// minus those running, and evicts the others (Evict listed) in batches of
// batchEvictionSize every batchEvictionInterval. A non-migratable VMI under
// LiveMigrate alone is never touched.
func (s *Simulator) syncUpdater(ctx context.Context, w *workloads, cfg clusterConfig) error {
	if cfg.kv == nil || !cfg.hasWorkloadUpdater || !cfg.updaterMayRun {
		return nil
	}
	d := s.updateData(w, cfg)
	for _, vmi := range d.relabel {
		if err := s.update(ctx, vmiGVR, vmi); err != nil {
			return err
		}
	}
	if err := s.patchOutdatedCount(ctx, cfg.kv, d.outdated); err != nil {
		return err
	}
	if len(d.migrate) > 0 || len(d.evict) > 0 {
		s.pokeAfter(s.opts.ControllerInterval)
	}
	// The updater shuffles its migration candidates (a VMI that keeps
	// failing does not block the others); its eviction candidates come in
	// the order of an informer's map, which is no order either.
	rand.Shuffle(len(d.migrate), func(i, j int) { d.migrate[i], d.migrate[j] = d.migrate[j], d.migrate[i] })
	rand.Shuffle(len(d.evict), func(i, j int) { d.evict[i], d.evict[j] = d.evict[j], d.evict[i] })
	for _, vmi := range d.migrate[:min(len(d.migrate), max(cfg.perCluster-d.migrating, 0))] {
		if err := s.createMigration(ctx, vmi, "kubevirt-workload-update-", map[string]any{WorkloadUpdateAnnotation: ""}); err != nil {
			return err
		}
	}
	return s.evictBatch(ctx, d.evict, cfg)
}

func (s *Simulator) updateData(w *workloads, cfg clusterConfig) updateData {
	var d updateData
	f := w.inFlight()
	d.migrating = f.running
	migrate, evict := slices.Contains(cfg.methods, "LiveMigrate"), slices.Contains(cfg.methods, "Evict")
	for i := range w.vmis {
		vmi := &w.vmis[i]
		if !vmiRunning(vmi) {
			continue
		}
		launcher, _, _ := unstructured.NestedString(vmi.Object, "status", "launcherContainerImageVersion")
		outdated := launcher != "" && launcher != cfg.launcher
		if relabel(vmi, outdated) {
			d.relabel = append(d.relabel, vmi)
		}
		if !outdated {
			continue
		}
		d.outdated++
		key := vmi.GetNamespace() + "/" + vmi.GetName()
		if migrationRunningFor(vmi) || f.unfinished[key] {
			continue
		}
		switch {
		case migrate && migratable(vmi):
			d.migrate = append(d.migrate, vmi)
		case evict:
			d.evict = append(d.evict, vmi)
		}
	}
	return d
}

// relabel sets or removes OutdatedLabel; it reports whether it changed.
func relabel(vmi *unstructured.Unstructured, outdated bool) bool {
	labels := vmi.GetLabels()
	if _, has := labels[OutdatedLabel]; has == outdated {
		return false
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
	return true
}

func migrationRunningFor(vmi *unstructured.Unstructured) bool {
	start, _, _ := unstructured.NestedString(vmi.Object, "status", "migrationState", "startTimestamp")
	end, _, _ := unstructured.NestedString(vmi.Object, "status", "migrationState", "endTimestamp")
	return start != "" && end == ""
}

// patchOutdatedCount writes status.outdatedVirtualMachineInstanceWorkloads
// with a JSON patch, as the updater does: added on its first pass (absent
// until then), replaced when it changes.
func (s *Simulator) patchOutdatedCount(ctx context.Context, kv *unstructured.Unstructured, n int) error {
	cur, has, _ := unstructured.NestedInt64(kv.Object, "status", "outdatedVirtualMachineInstanceWorkloads")
	if has && cur == int64(n) {
		return nil
	}
	op := "add"
	if has {
		op = "replace"
	}
	patch, _ := json.Marshal([]map[string]any{{"op": op, "path": "/status/outdatedVirtualMachineInstanceWorkloads", "value": n}})
	sub, err := s.hasStatusSubresource(ctx)
	if err != nil {
		return err
	}
	res := s.dyn.Resource(kubevirtGVR).Namespace(kv.GetNamespace())
	if sub {
		_, err = res.Patch(ctx, kv.GetName(), types.JSONPatchType, patch, metav1.PatchOptions{}, "status")
	} else {
		_, err = res.Patch(ctx, kv.GetName(), types.JSONPatchType, patch, metav1.PatchOptions{})
	}
	return err
}

// evictBatch evicts up to batchEvictionSize VMIs once batchEvictionInterval
// has passed since the last batch. Each eviction goes through virt-api's
// admitter.
func (s *Simulator) evictBatch(ctx context.Context, candidates []*unstructured.Unstructured, cfg clusterConfig) error {
	if len(candidates) == 0 {
		return nil
	}
	s.mu.Lock()
	next := s.lastEvictionBatch.Add(cfg.batchInterval)
	now := time.Now()
	if now.Before(next) {
		s.mu.Unlock()
		s.pokeAfter(next.Sub(now))
		return nil
	}
	s.lastEvictionBatch = now
	batch := candidates[:min(cfg.batchSize, len(candidates))]
	s.record(EvictionBatch, "", cfg.installed, fmt.Sprintf("workload updater evicts %d VMIs", len(batch)))
	s.mu.Unlock()
	for _, vmi := range batch {
		if err := s.evict(ctx, vmi, cfg); err != nil {
			return err
		}
	}
	return nil
}

// evict is the eviction of a VMI's launcher pod as virt-api's pod-eviction
// admitter decides it (docs/kubevirt.md, "Workload updates"): LiveMigrate,
// External and LiveMigrateIfPossible on a migratable VMI mark it for
// evacuation (a migration, same UID; External waits for someone else);
// LiveMigrate on a non-migratable VMI is denied, every time; otherwise the
// pod dies and the guest with it (Failed), back only if a VM restarts it.
func (s *Simulator) evict(ctx context.Context, vmi *unstructured.Unstructured, cfg clusterConfig) error {
	key := vmi.GetNamespace() + "/" + vmi.GetName()
	strategy := evictionStrategy(vmi, cfg)
	can := migratable(vmi)
	node, _, _ := unstructured.NestedString(vmi.Object, "status", "nodeName")
	mark, _, _ := unstructured.NestedString(vmi.Object, "status", "evacuationNodeName")
	marks := strategy == EvictionLiveMigrate && can || strategy == EvictionExternal || strategy == EvictionLiveMigrateIfPossible && can
	switch {
	case strategy == EvictionLiveMigrate && !can:
		s.mu.Lock()
		s.record(EvictionDenied, "", cfg.installed, "eviction of "+key+" denied: it has eviction strategy LiveMigrate but is not live-migratable")
		s.mu.Unlock()
		return nil
	case marks && mark != "":
		return nil // "Evacuation in progress": denied
	case marks:
		_ = unstructured.SetNestedField(vmi.Object, node, "status", "evacuationNodeName")
		return s.update(ctx, vmiGVR, vmi)
	}
	_ = unstructured.SetNestedField(vmi.Object, "Failed", "status", "phase")
	_ = unstructured.SetNestedField(vmi.Object, "Evicted", "status", "reason")
	if err := s.update(ctx, vmiGVR, vmi); err != nil {
		return err
	}
	s.mu.Lock()
	s.record(VMIShutDown, "", cfg.installed, key+" evicted: its virt-launcher pod was deleted and the guest shut down (eviction strategy "+orNone(strategy)+")")
	s.mu.Unlock()
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
