package simulator

import "time"

type faults struct {
	slow      time.Duration
	stall     map[string]bool // hop targets that never complete
	crashLoop map[string]bool // operator versions that never become ready
	disrupt   []string        // "ns/name" of VMIs to restart during the next hop
	deletion  time.Duration   // how long deletion pauses after phase Deleting
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

// StallHop makes the hop to version hang: the update stays in progress with
// no error, as with an unpullable imageTag (FACTS.md §1.7).
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
