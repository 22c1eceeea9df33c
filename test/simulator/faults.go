package simulator

import "time"

type faults struct {
	slow      time.Duration
	slowReady time.Duration   // extra readiness lag
	stall     map[string]bool // hop targets that never complete
	crashLoop map[string]bool // operator versions that never become ready
	disrupt   []string        // "ns/name" of VMIs to restart during the next hop
	deletion  time.Duration   // how long deletion pauses after phase Deleting

	fail         map[string]string // hop targets whose every pass fails, with the error
	holdShutdown bool              // deleted VMIs stay Terminating

	slowMigration time.Duration   // extra time each VMI takes to reach the new launcher
	failMigration map[string]bool // "ns/name" of VMIs whose live migration never succeeds
}

// FailHop makes every pass of the hop to version fail with msg, as a
// virt-handler rollout that never succeeds does ("daemonSet virt-handler
// rollout failed"): DeploymentFailed, retried with the operator's backoff.
func (s *Simulator) FailHop(version, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.fail == nil {
		s.faults.fail = map[string]string{}
	}
	s.faults.fail[version] = msg
}

// SlowMigrations makes moving each VMI to the new virt-launcher take d
// longer.
func (s *Simulator) SlowMigrations(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.slowMigration = d
}

// FailMigrations makes the live migrations of the VMIs ns/name fail: they
// stay on their old virt-launcher, outdated.
func (s *Simulator) FailMigrations(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.failMigration == nil {
		s.faults.failMigration = map[string]bool{}
	}
	for _, k := range keys {
		s.faults.failMigration[k] = true
	}
}

// AllowMigrations ends FailMigrations for the VMIs ns/name: the workload
// updater's next attempt moves them.
func (s *Simulator) AllowMigrations(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.faults.failMigration, k)
	}
}

// SlowDeletion makes the operator pause for d after marking the CR
// Deleting, long enough for a test to delete the operator mid-teardown.
func (s *Simulator) SlowDeletion(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.deletion = d
}

// SlowHops makes every following rollout take extra on top of RolloutDelay.
func (s *Simulator) SlowHops(extra time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.slow = extra
}

// SlowReadiness makes every following readiness check of an operator up
// to v1.8.x pass extra later than ReadyLag: a window a test can count on.
func (s *Simulator) SlowReadiness(extra time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.slowReady = extra
}

// StallHop makes the hop to version hang: the update stays in progress with
// no error, as with an unpullable imageTag (docs/kubevirt.md, "What done means").
func (s *Simulator) StallHop(version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.stall == nil {
		s.faults.stall = map[string]bool{}
	}
	s.faults.stall[version] = true
}

// CrashLoopOperator makes a virt-operator Deployment at version never become
// ready; the previous operator pods, if any, keep running.
func (s *Simulator) CrashLoopOperator(version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.crashLoop == nil {
		s.faults.crashLoop = map[string]bool{}
	}
	s.faults.crashLoop[version] = true
}

// DisruptVMIDuringNextHop restarts the VMI ns/name (new UID) when the next
// hop rolls out.
func (s *Simulator) DisruptVMIDuringNextHop(ns, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.disrupt = append(s.faults.disrupt, ns+"/"+name)
}

// ClearFaults removes every injected fault and lets stalled hops finish.
func (s *Simulator) ClearFaults() {
	s.mu.Lock()
	s.faults = faults{}
	s.mu.Unlock()
	s.poke()
}

// HoldVMIShutdown keeps deleted VMIs Terminating (a guest that takes its
// time to shut down) until released.
func (s *Simulator) HoldVMIShutdown(hold bool) {
	s.mu.Lock()
	s.faults.holdShutdown = hold
	s.mu.Unlock()
	s.poke()
}
