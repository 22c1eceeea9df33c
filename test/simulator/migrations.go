package simulator

import (
	"context"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// migration is what the simulator remembers of a running migration: when
// it started, to which launcher, and the CR it started under (a change of
// either while it runs kills the guest: kubevirt#18720).
type migration struct {
	started    time.Time
	launcher   string
	generation int64
	targetID   string
}

// Migration phases.
const (
	migrationPending   = "Pending"
	migrationRunning   = "Running"
	migrationSucceeded = "Succeeded"
	migrationFailed    = "Failed"
)

func migrationPhase(m *unstructured.Unstructured) string {
	p, _, _ := unstructured.NestedString(m.Object, "status", "phase")
	if p == "" {
		return migrationPending
	}
	return p
}

func migrationFinal(m *unstructured.Unstructured) bool {
	p := migrationPhase(m)
	return p == migrationSucceeded || p == migrationFailed
}

// inFlight counts running migrations, cluster-wide and by source node, and
// marks the VMIs with an unfinished one.
type inFlight struct {
	running    int
	fromNode   map[string]int
	unfinished map[string]bool // "ns/vmi"
}

func (w *workloads) inFlight() inFlight {
	f := inFlight{fromNode: map[string]int{}, unfinished: map[string]bool{}}
	for i := range w.migrations {
		m := &w.migrations[i]
		if migrationFinal(m) {
			continue
		}
		vmiName, _, _ := unstructured.NestedString(m.Object, "spec", "vmiName")
		f.unfinished[m.GetNamespace()+"/"+vmiName] = true
		if migrationPhase(m) == migrationRunning {
			f.running++
			if vmi := w.vmi(m.GetNamespace(), vmiName); vmi != nil {
				node, _, _ := unstructured.NestedString(vmi.Object, "status", "nodeName")
				f.fromNode[node]++
			}
		}
	}
	return f
}

// syncMigrations is the migration controller: a pending migration starts
// while fewer than parallelMigrationsPerCluster run and fewer than
// parallelOutboundMigrationsPerNode leave its VMI's node; a running one
// ends after MigrationDelay, the VMI on the new virt-launcher, same UID.
func (s *Simulator) syncMigrations(ctx context.Context, w *workloads, cfg clusterConfig) error {
	f := w.inFlight()
	for i := range w.migrations {
		m := &w.migrations[i]
		if m.GetDeletionTimestamp() != nil {
			if err := s.releaseMigration(ctx, m); err != nil {
				return err
			}
			continue
		}
		vmiName, _, _ := unstructured.NestedString(m.Object, "spec", "vmiName")
		vmi := w.vmi(m.GetNamespace(), vmiName)
		var err error
		switch migrationPhase(m) {
		case migrationPending:
			err = s.startMigration(ctx, m, vmi, cfg, &f)
		case migrationRunning:
			err = s.runMigration(ctx, m, vmi, cfg)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Simulator) releaseMigration(ctx context.Context, m *unstructured.Unstructured) error {
	if !slices.Contains(m.GetFinalizers(), MigrationFinalizer) {
		return nil
	}
	m.SetFinalizers(slices.DeleteFunc(m.GetFinalizers(), func(f string) bool { return f == MigrationFinalizer }))
	return s.update(ctx, migrationGVR, m)
}

func (s *Simulator) setMigrationPhase(ctx context.Context, m *unstructured.Unstructured, phase string) error {
	_ = unstructured.SetNestedField(m.Object, phase, "status", "phase")
	return s.update(ctx, migrationGVR, m)
}

func (s *Simulator) startMigration(ctx context.Context, m, vmi *unstructured.Unstructured, cfg clusterConfig, f *inFlight) error {
	if vmi == nil || !vmiRunning(vmi) {
		return s.setMigrationPhase(ctx, m, migrationFailed)
	}
	node, _, _ := unstructured.NestedString(vmi.Object, "status", "nodeName")
	if f.running >= cfg.perCluster || f.fromNode[node] >= cfg.perNode {
		return nil // waits for a slot
	}
	if err := s.setMigrationPhase(ctx, m, migrationRunning); err != nil {
		return err
	}
	f.running++
	f.fromNode[node]++
	now := time.Now()
	s.mu.Lock()
	s.migrations[string(m.GetUID())] = &migration{started: now, launcher: cfg.launcher, generation: cfg.generation, targetID: cfg.targetID}
	delay := s.opts.MigrationDelay + s.faults.slowMigration
	s.mu.Unlock()
	_ = unstructured.SetNestedMap(vmi.Object, map[string]any{"startTimestamp": now.UTC().Format(time.RFC3339), "sourceNode": node,
		"migrationUid": string(m.GetUID())}, "status", "migrationState")
	s.pokeAfter(delay)
	if err := s.update(ctx, vmiGVR, vmi); err != nil {
		return err
	}
	s.mu.Lock()
	s.record(MigrationStarted, "", cfg.installed, m.GetNamespace()+"/"+vmi.GetName()+" from "+node)
	s.mu.Unlock()
	return nil
}

// runMigration ends a running migration: interrupted (the guest is killed)
// when the CR changed under it, failed by a fault, or done.
func (s *Simulator) runMigration(ctx context.Context, m, vmi *unstructured.Unstructured, cfg clusterConfig) error {
	uid := string(m.GetUID())
	s.mu.Lock()
	mig := s.migrations[uid]
	if mig == nil { // started before a restart of the simulator: start over
		mig = &migration{started: time.Now(), launcher: cfg.launcher, generation: cfg.generation, targetID: cfg.targetID}
		s.migrations[uid] = mig
	}
	key := m.GetNamespace() + "/"
	if vmi != nil {
		key += vmi.GetName()
	}
	failing := s.faults.failMigration[key]
	due := mig.started.Add(s.opts.MigrationDelay + s.faults.slowMigration)
	s.mu.Unlock()
	switch {
	case vmi == nil || !vmiRunning(vmi):
		return s.endMigration(ctx, m, migrationFailed)
	case cfg.kv != nil && (cfg.generation != mig.generation || cfg.targetID != mig.targetID):
		return s.interrupt(ctx, m, vmi, key, cfg)
	case time.Now().Before(due):
		s.pokeAfter(time.Until(due))
		return nil
	case failing:
		s.mu.Lock()
		s.record(MigrationFailed, "", cfg.installed, key+" failed to live-migrate; it stays on its old virt-launcher")
		s.mu.Unlock()
		unstructured.RemoveNestedField(vmi.Object, "status", "migrationState")
		if err := s.update(ctx, vmiGVR, vmi); err != nil {
			return err
		}
		return s.endMigration(ctx, m, migrationFailed)
	}
	return s.completeMigration(ctx, m, vmi, key, mig)
}

func (s *Simulator) endMigration(ctx context.Context, m *unstructured.Unstructured, phase string) error {
	s.mu.Lock()
	delete(s.migrations, string(m.GetUID()))
	s.mu.Unlock()
	return s.setMigrationPhase(ctx, m, phase)
}

// interrupt: the CR changed (a spec change or a new target) while the
// migration ran; virt-handler is re-rolled under it and the guest dies
// (kubevirt#18720, #18396, #18670). Recorded as a violation.
func (s *Simulator) interrupt(ctx context.Context, m, vmi *unstructured.Unstructured, key string, cfg clusterConfig) error {
	_ = unstructured.SetNestedField(vmi.Object, "Failed", "status", "phase")
	_ = unstructured.SetNestedField(vmi.Object, "MigrationInterrupted", "status", "reason")
	unstructured.RemoveNestedField(vmi.Object, "status", "migrationState")
	if err := s.update(ctx, vmiGVR, vmi); err != nil {
		return err
	}
	s.mu.Lock()
	s.record(MigrationInterrupted, "", cfg.installed, "the KubeVirt CR changed while "+key+" was live-migrating: virt-handler re-rolled under it and the guest was killed (kubevirt#18720)")
	s.mu.Unlock()
	return s.endMigration(ctx, m, migrationFailed)
}

// completeMigration moves the VMI to the new pod: the launcher of the
// install the migration started under, another node, same UID.
func (s *Simulator) completeMigration(ctx context.Context, m, vmi *unstructured.Unstructured, key string, mig *migration) error {
	node, _, _ := unstructured.NestedString(vmi.Object, "status", "nodeName")
	target := nextNode(node)
	now := time.Now().UTC().Format(time.RFC3339)
	st := vmi.Object["status"].(map[string]any)
	st["launcherContainerImageVersion"], st["nodeName"] = mig.launcher, target
	st["migrationState"] = map[string]any{"completed": true, "endTimestamp": now, "sourceNode": node, "targetNode": target, "migrationUid": string(m.GetUID())}
	delete(st, "evacuationNodeName")
	labels := vmi.GetLabels()
	delete(labels, OutdatedLabel)
	vmi.SetLabels(labels)
	if err := s.update(ctx, vmiGVR, vmi); err != nil {
		return err
	}
	s.mu.Lock()
	s.record(VMIMigrated, "", mig.launcher, key+" live-migrated to "+mig.launcher+" on "+target)
	s.mu.Unlock()
	return s.endMigration(ctx, m, migrationSucceeded)
}

func nextNode(n string) string {
	switch n {
	case "node-1":
		return "node-2"
	case "node-2":
		return "node-3"
	}
	return "node-1"
}

// createMigration creates a migration of vmi, as the workload updater or
// the evacuation controller does.
func (s *Simulator) createMigration(ctx context.Context, vmi *unstructured.Unstructured, prefix string, annotations map[string]any) error {
	m := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1alpha3", "kind": "VirtualMachineInstanceMigration",
		"metadata": map[string]any{"generateName": prefix, "namespace": vmi.GetNamespace(), "annotations": annotations,
			"finalizers": []any{MigrationFinalizer}},
		"spec":   map[string]any{"vmiName": vmi.GetName()},
		"status": map[string]any{"phase": migrationPending},
	}}
	_, err := s.dyn.Resource(migrationGVR).Namespace(vmi.GetNamespace()).Create(ctx, m, metav1.CreateOptions{})
	return err
}

// evictionStrategy is the VMI's own, else the cluster's ("" = none).
func evictionStrategy(vmi *unstructured.Unstructured, cfg clusterConfig) string {
	if s, ok, _ := unstructured.NestedString(vmi.Object, "spec", "evictionStrategy"); ok && s != "" {
		return s
	}
	return cfg.evictionStrategy
}

func migratable(vmi *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(vmi.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "LiveMigratable" {
			return m["status"] == "True"
		}
	}
	return false
}

// syncEvacuations is the evacuation controller: a VMI marked for eviction
// (status.evacuationNodeName) whose strategy migrates on eviction
// (LiveMigrate; LiveMigrateIfPossible when migratable) gets a migration,
// within the same limits. External marks are left to an external
// controller: KubeVirt does not move those VMIs.
func (s *Simulator) syncEvacuations(ctx context.Context, w *workloads, cfg clusterConfig) error {
	f := w.inFlight()
	for i := range w.vmis {
		vmi := &w.vmis[i]
		node, _, _ := unstructured.NestedString(vmi.Object, "status", "nodeName")
		mark, _, _ := unstructured.NestedString(vmi.Object, "status", "evacuationNodeName")
		key := vmi.GetNamespace() + "/" + vmi.GetName()
		strategy := evictionStrategy(vmi, cfg)
		moves := strategy == EvictionLiveMigrate || strategy == EvictionLiveMigrateIfPossible && migratable(vmi)
		if mark == "" || mark != node || !vmiRunning(vmi) || f.unfinished[key] || !moves || !migratable(vmi) {
			continue
		}
		if f.running >= cfg.perCluster || f.fromNode[node] >= cfg.perNode {
			s.pokeAfter(s.opts.ControllerInterval)
			continue
		}
		if err := s.createMigration(ctx, vmi, "kubevirt-evacuation-", nil); err != nil {
			return err
		}
		f.unfinished[key] = true
	}
	return nil
}
