package agent

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
)

// Agent reconciles one cluster against one desired file.
type Agent struct {
	cfg     Config
	repo    Repo
	cluster Cluster
	catalog CatalogFunc
	log     logger
	trigger chan struct{}

	// Loop state: touched only by the goroutine running Run/Reconcile.
	lastSeen    string // newest head known to descend from what was applied
	src         desiredSource
	releases    catalogCache
	plans       planTracker
	conditions  []Condition
	workloads   *Workloads
	lastWritten []byte
	wakeAt      time.Time // a maintenance window opening
	journal     journal
	pushFailure fault.Reason // the reason of the last failed status push, until one succeeds
	applied     *planner.Applied
	driftSaid   string // the drift last announced by an Event
	// peersMissing is when each fleet peer was first found without a
	// status file.
	peersMissing map[string]time.Time

	// The memory (memory.go): recalled once from the cluster after start,
	// remembered there whenever it changes.
	mem          *Memory // as recalled
	recalled     bool
	saved        []byte            // the memory last written
	accepted     map[string]string // path → signed commit that set what was accepted
	peersSeen    map[string]PeerSeen
	migratedFrom string

	mu       sync.Mutex
	snapshot Status
	lastOK   time.Time
	lastBeat time.Time // a step's wait last looked again (executor.WithHeartbeat)
}

// desiredSource is what the repository says is desired, read when the
// head moves and kept while the content stays the same.
type desiredSource struct {
	readRev string // head the desired file was last read at
	rev     string // head at which the current desired bytes first appeared
	digest  string // sha256 of the desired bytes, 16 hex digits
	key     string // what the desired content is: its bytes, or why it cannot be read
	desired *planner.Desired
	err     error // why the desired content cannot be used
	from    Provenance
	// fleet is the parsed fleet file and this cluster's place in it (fleet
	// mode only).
	fleet  *planner.Fleet
	member planner.Membership
}

// planTracker follows plans from start to history.
type planTracker struct {
	active   *activePlan
	finished *PlanStatus // the last plan that ran, shown until another starts
	history  []Run       // finished runs, newest first
	failed   *failure    // a terminal failure, stalled until its key changes
	lastDone string      // plan id # step index of the step that just succeeded
}

// catalogCache is the last good release catalog and when it was fetched.
type catalogCache struct {
	cat *planner.Catalog
	at  time.Time
}

// failure is a terminal step failure, stalled until its key changes.
type failure struct {
	Key     string       `json:"key"` // desired digest + plan id
	Reason  fault.Reason `json:"reason"`
	Message string       `json:"message"`
}

// New builds an agent. It starts nothing.
func New(cfg Config, repo Repo, cluster Cluster, catalog CatalogFunc) *Agent {
	cfg.defaults()
	return &Agent{cfg: cfg, repo: repo, cluster: cluster, catalog: catalog, log: logger{cfg.Logger}, trigger: make(chan struct{}, 1)}
}

func (a *Agent) hook(point string) {
	if a.cfg.Hook != nil {
		a.cfg.Hook(point)
	}
}

// Trigger asks for a reconcile now (webhook, tests). It never blocks.
func (a *Agent) Trigger() {
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}

// Run reconciles until ctx ends: on the interval (with jitter), on Trigger,
// when a maintenance window opens, right after a step, and after failures
// with exponential backoff, which a Trigger does not cut short. It returns
// when ctx is done, with nothing left running.
func (a *Agent) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	failures := 0
	var backingOff time.Time // end of the failure back-off
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-a.trigger:
			if time.Now().Before(backingOff) {
				continue // a webhook storm must not undo the back-off
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		again, err := a.Reconcile(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		switch {
		case err != nil:
			failures++
			wait = a.backoff(failures, err)
			backingOff = time.Now().Add(wait)
			a.log.reconcileFailed(err, wait)
		case again:
			failures = 0
		default:
			failures = 0
			wait = a.jittered()
			if !a.wakeAt.IsZero() {
				if d := a.wakeAt.Sub(a.cfg.Clock()); d >= 0 && d < wait {
					wait = d + time.Second
				}
			}
		}
		timer.Reset(wait)
	}
}

func (a *Agent) jittered() time.Duration {
	j := a.cfg.Jitter * (2*rand.Float64() - 1)
	return time.Duration(float64(a.cfg.Interval) * (1 + j))
}

// backoff doubles from one second up to MaxBackoff, or honours an error's
// RetryAfter (rate limits), whichever is longer.
func (a *Agent) backoff(n int, err error) time.Duration {
	d := time.Second << min(n-1, 20)
	if d > a.cfg.MaxBackoff {
		d = a.cfg.MaxBackoff
	}
	return max(d, fault.RetryIn(err))
}

// Snapshot is the last status the agent computed (pushed or not).
func (a *Agent) Snapshot() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.snapshot
}

// LastSuccess is when a reconcile last completed without error.
func (a *Agent) LastSuccess() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastOK
}

// LastAlive is when the loop last showed it turns: a reconcile that
// completed, or a running step's wait that looked again. A hop and its
// workload wait can rightly take far longer than a pass (bounded by
// hopTimeout and spec.workloads); a wedged loop does neither.
func (a *Agent) LastAlive() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lastBeat.After(a.lastOK) {
		return a.lastBeat
	}
	return a.lastOK
}

// beat records that a running step's wait looked again.
func (a *Agent) beat() {
	a.mu.Lock()
	a.lastBeat = a.cfg.Clock()
	a.mu.Unlock()
}
