package simulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/standin"
)

// Resources the simulator works with.
var (
	kubevirtGVR = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1alpha3", Resource: "kubevirts"}
	vmiGVR      = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1alpha3", Resource: "virtualmachineinstances"}
	vmGVR       = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1alpha3", Resource: "virtualmachines"}
	crdGVR      = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	apiSvcGVR   = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
)

// OperatorServiceAccount is who the simulated operator acts as when it
// writes RBAC.
const OperatorServiceAccount = "kubevirt-operator"

// Options configure a Simulator. Zero values take the defaults.
type Options struct {
	// Namespace of the operator and the KubeVirt CR. Default "kubevirt".
	Namespace string
	// RolloutDelay is how long a rollout of the operator or of the
	// components takes. Default 300ms.
	RolloutDelay time.Duration
	// StrategyDelay is how long loading an install strategy takes; the
	// finalizer is added after it. Default 50ms.
	StrategyDelay time.Duration
	// ReadyLag is how long an operator up to v1.8.x shows observed == target
	// before its readiness check passes (docs/kubevirt.md, "What done means"). Default 50ms.
	ReadyLag time.Duration
	// RetryBase is the operator's first retry after a failed pass; it
	// doubles up to RetryMax. Default 5s and 1000s, as the real operator.
	RetryBase, RetryMax time.Duration
	// MigrationDelay is how long moving one VMI to the new virt-launcher
	// takes (live migration or eviction). Default 100ms.
	MigrationDelay time.Duration
	// VMIShutdownDelay is how long a deleted VMI takes to shut down before
	// its finalizer is removed (while virt-controller runs). Default 50ms.
	VMIShutdownDelay time.Duration
	// ControllerInterval is the least time between two passes of the
	// simulated virt-controller over the workloads (raise it for thousands
	// of VMIs). Default 50ms.
	ControllerInterval time.Duration
	// Catalog lists the release tags the supported-path check knows.
	// Default: the real catalog.
	Catalog []string
	Logger  *slog.Logger
}

// Simulator is a running simulated virt-operator.
type Simulator struct {
	admin   *rest.Config
	kube    kubernetes.Interface
	dyn     dynamic.Interface
	opDyn   dynamic.Interface // impersonates the operator's ServiceAccount
	opts    Options
	rules   pathRules
	log     *slog.Logger
	hooks   *webhookServer
	kick    chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool

	// writing is held across a KubeVirt CR write and the transitions it
	// records, and read-held by Transitions: a reader that saw the write
	// (a watcher is told before the writer hears back) sees its
	// transitions. Apart from mu, which the webhooks the write calls take.
	writing sync.RWMutex

	mu            sync.Mutex
	op            operatorState
	hops          map[string]*hop // by target deployment id
	faults        faults
	transitions   []Transition
	changed       chan struct{} // closed and replaced on every transition
	virtAPI       bool
	deletingSince time.Time
	pending       []func()              // transitions waiting for a successful write
	migrations    map[string]*migration // migration UID → what it started under
	shutdowns     map[string]time.Time  // VMI UID → when its deletion was seen

	lastControllerPass, lastEvictionBatch time.Time
}

// New prepares a simulator for the apiserver behind admin, which must be
// allowed to impersonate.
func New(admin *rest.Config, opts Options) (*Simulator, error) {
	if opts.Namespace == "" {
		opts.Namespace = releases.Namespace
	}
	if opts.RolloutDelay == 0 {
		opts.RolloutDelay = 300 * time.Millisecond
	}
	if opts.StrategyDelay == 0 {
		opts.StrategyDelay = 50 * time.Millisecond
	}
	if opts.ReadyLag == 0 {
		opts.ReadyLag = 50 * time.Millisecond
	}
	if opts.RetryBase == 0 {
		opts.RetryBase = 5 * time.Second
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = 1000 * time.Second
	}
	if opts.MigrationDelay == 0 {
		opts.MigrationDelay = 100 * time.Millisecond
	}
	if opts.VMIShutdownDelay == 0 {
		opts.VMIShutdownDelay = 50 * time.Millisecond
	}
	if opts.ControllerInterval == 0 {
		opts.ControllerInterval = 50 * time.Millisecond
	}
	if opts.Catalog == nil {
		opts.Catalog = releases.Tags()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := rest.CopyConfig(admin)
	cfg.WarningHandler = rest.NoWarnings{}
	cfg.QPS, cfg.Burst = 500, 1000
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	opCfg := rest.CopyConfig(cfg)
	opCfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + opts.Namespace + ":" + OperatorServiceAccount,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + opts.Namespace, "system:authenticated"},
	}
	opDyn, err := dynamic.NewForConfig(opCfg)
	if err != nil {
		return nil, err
	}
	return &Simulator{
		admin: cfg, kube: kube, dyn: dyn, opDyn: opDyn, opts: opts,
		rules: newPathRules(opts.Catalog), log: opts.Logger,
		kick: make(chan struct{}, 1), hops: map[string]*hop{}, changed: make(chan struct{}),
		migrations: map[string]*migration{}, shutdowns: map[string]time.Time{},
	}, nil
}

// Start runs the simulator until Stop. It returns once the webhook server
// listens.
func (s *Simulator) Start(ctx context.Context) error {
	if s.started {
		return errors.New("simulator already started")
	}
	hooks, err := newWebhookServer(s)
	if err != nil {
		return err
	}
	s.hooks = hooks
	ctx, s.cancel = context.WithCancel(ctx)
	s.started = true
	s.goRun(func() { hooks.serve(ctx) })
	s.goRun(func() { s.watchLoop(ctx, crdGVR, "", "metadata.name=kubevirts.kubevirt.io") })
	s.goRun(func() { s.watchLoop(ctx, kubevirtGVR, "", "") })
	s.goRun(func() {
		s.watchLoop(ctx, schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, "", "metadata.name="+s.opts.Namespace)
	})
	s.goRun(func() {
		s.watchLoop(ctx, schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, s.opts.Namespace, "")
	})
	for _, gvr := range []schema.GroupVersionResource{vmiGVR, vmGVR, migrationGVR} {
		s.goRun(func() { s.watchLoop(ctx, gvr, "", "") })
	}
	s.goRun(func() { s.loop(ctx) })
	s.poke()
	return nil
}

// Stop stops every goroutine the simulator started and waits for them.
func (s *Simulator) Stop() {
	if !s.started {
		return
	}
	s.cancel()
	s.wg.Wait()
}

func (s *Simulator) goRun(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// retryBackoff is the operator's wait before retrying a pass that failed
// for the n-th time in a row.
func (s *Simulator) retryBackoff(n int) time.Duration {
	d := s.opts.RetryBase << min(n-1, 30)
	if d > s.opts.RetryMax || d <= 0 {
		d = s.opts.RetryMax
	}
	return d
}

// poke asks for a reconcile.
func (s *Simulator) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// pokeAfter asks for a reconcile after d. A timer firing after Stop only
// fills the buffered kick channel, so timers need no tracking.
func (s *Simulator) pokeAfter(d time.Duration) { time.AfterFunc(d, s.poke) }

func (s *Simulator) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				s.poke()
				continue
			}
			s.log.Debug("Simulator reconcile failed", "error", err)
			s.pokeAfter(50 * time.Millisecond)
		}
	}
}

// watchLoop turns watch events into reconciles, re-establishing the watch
// when it ends (the resource may not exist yet).
func (s *Simulator) watchLoop(ctx context.Context, gvr schema.GroupVersionResource, ns, fieldSelector string) {
	for ctx.Err() == nil {
		w, err := s.dyn.Resource(gvr).Namespace(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fieldSelector})
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		s.drain(ctx, w)
		s.poke()
	}
}

func (s *Simulator) drain(ctx context.Context, w watch.Interface) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == watch.Error {
				return
			}
			s.poke()
		}
	}
}

// reconcile is one level-triggered pass over the cluster.
func (s *Simulator) reconcile(ctx context.Context) error {
	settled, err := standin.FinalizeNamespace(ctx, s.kube, s.dyn, s.opts.Namespace)
	if err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	if !settled {
		s.pokeAfter(100 * time.Millisecond) // Terminating and not empty yet
	}
	op, err := s.syncOperator(ctx)
	if err != nil {
		return fmt.Errorf("operator: %w", err)
	}
	kvs, err := s.dyn.Resource(kubevirtGVR).Namespace("").List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		kvs, err = &unstructured.UnstructuredList{}, nil
	}
	if err != nil {
		return err
	}
	var served *unstructured.Unstructured // the CR virt-controller follows
	if len(kvs.Items) == 1 && kvs.Items[0].GetNamespace() == s.opts.Namespace {
		served = &kvs.Items[0]
	}
	if err := s.syncController(ctx, served); err != nil {
		return fmt.Errorf("virt-controller: %w", err)
	}
	if len(kvs.Items) == 0 {
		return nil
	}
	if op == nil {
		return nil // no running operator: nothing acts on the CR
	}
	// checkForActiveInstall: with more than one CR anywhere, or the one CR
	// outside the operator's namespace, every CR is ignored (docs/kubevirt.md, "The KubeVirt CR").
	if len(kvs.Items) > 1 || kvs.Items[0].GetNamespace() != s.opts.Namespace {
		for i := range kvs.Items {
			if err := s.markExisting(ctx, &kvs.Items[i]); err != nil {
				return err
			}
		}
		return nil
	}
	kv := &kvs.Items[0]
	if kv.GetDeletionTimestamp() != nil {
		return s.syncDeletion(ctx, kv, *op)
	}
	return s.syncInstall(ctx, kv, *op)
}
