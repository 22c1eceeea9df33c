package simulator

import (
	"context"
	"slices"
	"time"
)

// Kind names what a transition did.
type Kind string

// Transition kinds.
const (
	OperatorRolloutStarted Kind = "OperatorRolloutStarted"
	OperatorReady          Kind = "OperatorReady"
	OperatorCrashLooping   Kind = "OperatorCrashLooping"
	OperatorGone           Kind = "OperatorGone"
	InstallStarted         Kind = "InstallStarted"
	HopStarted             Kind = "HopStarted"
	HopRefused             Kind = "HopRefused"
	RBACForbidden          Kind = "RBACForbidden"
	RBACGranted            Kind = "RBACGranted"
	FinalizerAdded         Kind = "FinalizerAdded"
	VMIDisrupted           Kind = "VMIDisrupted"
	HopCompleted           Kind = "HopCompleted"
	DeletionStarted        Kind = "DeletionStarted"
	LeftoversKept          Kind = "LeftoversKept"
	FinalizerRemoved       Kind = "FinalizerRemoved"
	ExistingDeployment     Kind = "ExistingDeployment"
	// PathViolation: a hop that breaks KubeVirt's supported update path
	// (skipped minor, downgrade, not from the latest patch). The real
	// operator executes it anyway, and so does the simulator.
	PathViolation Kind = "PathViolation"
	// MixedInstall: the install strategy came from the running operator, not
	// from the target (kubevirt#16050): a broken install that reports success.
	MixedInstall Kind = "MixedInstall"
	// MigrationInterrupted: the KubeVirt CR changed (spec or target) while a
	// live migration ran and the guest was killed (kubevirt#18720): a
	// violation, as nothing may change KubeVirt mid-migration.
	MigrationInterrupted Kind = "MigrationInterrupted"
	// MigrationStarted: a live migration of the VMI (message "ns/name from
	// node") began; VMIMigrated, MigrationFailed or MigrationInterrupted
	// ends it.
	MigrationStarted Kind = "MigrationStarted"
	VMIMigrated      Kind = "VMIMigrated"
	MigrationFailed  Kind = "MigrationFailed"
	// EvictionBatch: the workload updater evicted a batch.
	EvictionBatch Kind = "EvictionBatch"
	// EvictionDenied: virt-api denied an eviction (LiveMigrate on a VMI
	// that cannot migrate).
	EvictionDenied Kind = "EvictionDenied"
	// VMIShutDown: an eviction killed the guest (its launcher pod died).
	VMIShutDown Kind = "VMIShutDown"
	// VMIStarted: a VM's run strategy started its first VMI.
	VMIStarted Kind = "VMIStarted"
	// VMIRestarted: a VM's run strategy started a new VMI (new UID) after
	// the last one ended.
	VMIRestarted Kind = "VMIRestarted"
	// ImagePullFailed: the install points its components at images that
	// cannot exist (an empty registry or tag from a renamed operator image).
	ImagePullFailed Kind = "ImagePullFailed"
	CRDsDeleted     Kind = "CRDsDeleted"
)

// Violations are the transitions that mean KubeVirt was driven outside its
// rules: every test and the demo assert there are none.
func (s *Simulator) Violations() []Transition {
	var out []Transition
	for _, t := range s.Transitions() {
		if t.Kind == PathViolation || t.Kind == MixedInstall || t.Kind == MigrationInterrupted {
			out = append(out, t)
		}
	}
	return out
}

// Transition is one thing the simulator did, in order.
type Transition struct {
	At      time.Time
	Kind    Kind
	From    string // version before, "" for an install
	To      string // version after
	Message string
}

// record appends a transition. Callers hold s.mu.
func (s *Simulator) record(k Kind, from, to, msg string) {
	s.transitions = append(s.transitions, Transition{At: time.Now(), Kind: k, From: from, To: to, Message: msg})
	s.log.Info("Simulator transition", "kind", string(k), "from", from, "to", to, "message", msg)
	close(s.changed)
	s.changed = make(chan struct{})
}

// Transitions returns everything recorded so far, a KubeVirt CR write in
// flight included once it is done.
func (s *Simulator) Transitions() []Transition {
	s.writing.RLock()
	defer s.writing.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.transitions)
}

// Hop is a completed install or update.
type Hop struct{ From, To string }

// CompletedHops lists the installs (From "") and updates that finished.
func (s *Simulator) CompletedHops() []Hop {
	var out []Hop
	for _, t := range s.Transitions() {
		if t.Kind == HopCompleted {
			out = append(out, Hop{From: t.From, To: t.To})
		}
	}
	return out
}

// Count counts transitions of a kind.
func (s *Simulator) Count(k Kind) int {
	n := 0
	for _, t := range s.Transitions() {
		if t.Kind == k {
			n++
		}
	}
	return n
}

// WaitFor blocks until cond holds over the transitions or ctx ends.
func (s *Simulator) WaitFor(ctx context.Context, cond func([]Transition) bool) error {
	for {
		s.mu.Lock()
		ok := cond(s.transitions)
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Has is a WaitFor condition: a transition of kind k to version to ("" any).
func Has(k Kind, to string) func([]Transition) bool {
	return func(ts []Transition) bool {
		for _, t := range ts {
			if t.Kind == k && (to == "" || t.To == to) {
				return true
			}
		}
		return false
	}
}
