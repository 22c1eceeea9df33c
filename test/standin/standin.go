package standin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options configure the stand-ins.
type Options struct {
	// Admin connects to the apiserver as an administrator.
	Admin *rest.Config
	// OperatorKubeconfig is what virt-operator and its Jobs connect with
	// (the operator's ServiceAccount, impersonated).
	OperatorKubeconfig string
	// Binaries holds <tag>/virt-operator builds.
	Binaries string
	// OperatorIP and VirtAPIIP are addresses inside the test's network
	// namespace: virt-operator listens on the first (its webhook on :8444),
	// the virt-api stand-in on the second (:8443).
	OperatorIP, VirtAPIIP string
	// Namespace is KubeVirt's. Default "kubevirt".
	Namespace string
	// Dir receives the processes' logs.
	Dir    string
	Logger *slog.Logger
}

// Event is one thing the stand-ins did, for tests and logs.
type Event struct {
	At      time.Time
	Kind    string
	Message string
}

// Standin runs every stand-in until Stop.
type Standin struct {
	opts   Options
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	api    *virtAPI
	dir    string
	kick   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	op      *operatorProcess
	paused  bool
	starts  int
	events  []Event
	changed chan struct{}
}

// Start brings the stand-ins up.
func Start(o Options) (*Standin, error) {
	if o.Namespace == "" {
		o.Namespace = "kubevirt"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := rest.CopyConfig(o.Admin)
	cfg.QPS, cfg.Burst = 200, 400
	cfg.WarningHandler = rest.NoWarnings{}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "standin-"); err != nil {
			return nil, err
		}
	}
	api, err := newVirtAPI(kube, o.Namespace, net.JoinHostPort(o.VirtAPIIP, "8443"))
	if err != nil {
		return nil, err
	}
	s := &Standin{opts: o, kube: kube, dyn: dyn, api: api, dir: dir, kick: make(chan struct{}, 1), changed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(3)
	go func() { defer s.wg.Done(); _ = api.serve() }()
	go func() { defer s.wg.Done(); s.watch(ctx) }()
	go func() { defer s.wg.Done(); s.loop(ctx) }()
	return s, nil
}

// Stop stops the operator process, the servers and the loops, and waits.
func (s *Standin) Stop() {
	s.cancel()
	s.api.stop()
	s.mu.Lock()
	op := s.op
	s.op = nil
	s.mu.Unlock()
	if op != nil {
		s.stopOperator(op)
	}
	s.wg.Wait()
}

// Dir holds the logs of the operator and its Jobs.
func (s *Standin) Dir() string { return s.dir }

func (s *Standin) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Standin) record(kind, msg string) {
	s.mu.Lock()
	s.events = append(s.events, Event{At: time.Now(), Kind: kind, Message: msg})
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.opts.Logger.Info("Stand-in event", "kind", kind, "message", msg)
}

// Events returns what the stand-ins did so far.
func (s *Standin) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

func (s *Standin) waitFor(cond func() bool) {
	for !cond() {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// loop reconciles on every change and at least twice a second.
func (s *Standin) loop(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-tick.C:
		}
		err := s.reconcile(ctx)
		if msg := fmt.Sprint(err); err != nil && ctx.Err() == nil && msg != lastErr {
			s.record("PassFailed", msg)
		}
		lastErr = fmt.Sprint(err)
	}
}

func (s *Standin) reconcile(ctx context.Context) error {
	var errs []error
	if _, err := FinalizeNamespace(ctx, s.kube, s.dyn, s.opts.Namespace); err != nil {
		errs = append(errs, fmt.Errorf("namespace: %w", err))
	}
	for name, f := range map[string]func(context.Context) error{
		"operator": s.syncOperator, "workloads": s.syncWorkloads, "jobs": s.syncJobs, "endpoints": s.syncEndpoints,
	} {
		if err := f(ctx); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// watch turns changes in KubeVirt's namespace into passes.
func (s *Standin) watch(ctx context.Context) {
	var wg sync.WaitGroup
	for _, w := range []func(context.Context) (watch.Interface, error){
		func(ctx context.Context) (watch.Interface, error) {
			return s.kube.AppsV1().Deployments(s.opts.Namespace).Watch(ctx, metav1.ListOptions{})
		},
		func(ctx context.Context) (watch.Interface, error) {
			return s.kube.AppsV1().DaemonSets(s.opts.Namespace).Watch(ctx, metav1.ListOptions{})
		},
		func(ctx context.Context) (watch.Interface, error) {
			return s.kube.BatchV1().Jobs(s.opts.Namespace).Watch(ctx, metav1.ListOptions{})
		},
		func(ctx context.Context) (watch.Interface, error) {
			return s.kube.CoreV1().Services(s.opts.Namespace).Watch(ctx, metav1.ListOptions{})
		},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				wi, err := w(ctx)
				if err != nil {
					time.Sleep(200 * time.Millisecond)
					continue
				}
				for range wi.ResultChan() {
					s.poke()
				}
				wi.Stop()
			}
		}()
	}
	wg.Wait()
}
