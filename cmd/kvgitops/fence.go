package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/kvgitops/kvgitops/agent"
)

// leaseGuard fences writes by time: this replica writes only while its last
// successful Lease renewal is younger than the renew deadline. A standby
// takes the Lease only after the lease duration (longer) has passed since
// that renewal, so a leader paused past it (SIGSTOP, a GC pause, a frozen
// node) wakes to find every write refused before it is sent, instead of
// acting on a check it made before the pause.
type leaseGuard struct {
	mu       sync.Mutex
	renewed  time.Time // when the last successful renewal was sent
	deadline time.Duration
}

var errNotLeading = errors.New("not leading")

// held returns nil while writes are allowed.
func (g *leaseGuard) held(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.renewed.IsZero() {
		return fmt.Errorf("%w: the leader lease is not held", errNotLeading)
	}
	if age := time.Since(g.renewed); age >= g.deadline {
		return fmt.Errorf("%w: the leader lease was last renewed %s ago, past the %s renew deadline", errNotLeading, age.Round(time.Millisecond), g.deadline)
	}
	return nil
}

func (g *leaseGuard) renewedAt(t time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t.After(g.renewed) {
		g.renewed = t
	}
}

func (g *leaseGuard) lost() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.renewed = time.Time{}
}

// wrap refuses every mutating request when the guard does not hold, right
// before it is sent.
func (g *leaseGuard) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if err := g.held(r.Context()); err != nil {
				return nil, fmt.Errorf("%s %s refused: %w", r.Method, r.URL.Path, err)
			}
		}
		return rt.RoundTrip(r)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// guardedLock records when a renewal (or the acquisition) succeeded: the
// time it was sent, the conservative end.
type guardedLock struct {
	resourcelock.Interface
	guard *leaseGuard
}

func (l *guardedLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	start := time.Now()
	err := l.Interface.Create(ctx, r)
	if err == nil && r.HolderIdentity == l.Identity() {
		l.guard.renewedAt(start)
	}
	return err
}

func (l *guardedLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	start := time.Now()
	err := l.Interface.Update(ctx, r)
	if err == nil && r.HolderIdentity == l.Identity() {
		l.guard.renewedAt(start)
	}
	return err
}

// election holds a Lease; the agent runs only while it leads.
type election struct {
	leases   coordinationv1.CoordinationV1Interface
	ns, name string
	id       string
	guard    *leaseGuard
}

func newElection(c runConfig, restCfg *rest.Config, identity string) (*election, error) {
	leases, err := coordinationv1.NewForConfig(restCfg)
	if err != nil {
		return nil, err
	}
	return &election{leases: leases, ns: agentNamespace(c), name: c.leaseName, id: identity,
		guard: &leaseGuard{deadline: c.renewDeadline}}, nil
}

// run runs the agent only while this replica holds the Lease. Losing it
// ends the process (the kubelet restarts it as a standby).
func (e *election) run(ctx context.Context, c runConfig, log *slog.Logger, health *agent.Health, a *agent.Agent) error {
	lock := &guardedLock{Interface: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.ns, Name: e.name},
		Client:     e.leases,
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.id},
	}, guard: e.guard}
	var runErr error
	lost := false
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: c.leaseDuration, RenewDeadline: c.renewDeadline, RetryPeriod: c.retryPeriod,
		ReleaseOnCancel: true, Name: e.name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Info("Leading", "lease", e.ns+"/"+e.name, "identity", e.id)
				health.SetLeading(true)
				runErr = a.Run(ctx)
			},
			OnStoppedLeading: func() {
				e.guard.lost()
				health.SetLeading(false)
				if ctx.Err() == nil {
					lost = true
				}
			},
		},
	})
	if err != nil {
		return err
	}
	le.Run(ctx)
	if lost {
		return errors.New("lost the leader lease; exiting so a standby takes over")
	}
	return runErr
}
