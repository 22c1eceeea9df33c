package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/release"
)

// Config configures an Executor.
type Config struct {
	// Namespace is KubeVirt's namespace. Default "kubevirt".
	Namespace string
	// FieldManager owns what the executor applies. Default "kvgitops".
	FieldManager string
	// Releases fetches manifests. Required for steps that apply them.
	Releases *release.Client
	// CallTimeout bounds one API call. Default 30s.
	CallTimeout time.Duration
	// FailGrace is how long a DeploymentFailed condition must persist before
	// a hop counts as failed (the operator shows it until its next good
	// pass). Default DefaultFailGrace.
	FailGrace time.Duration
	// Hook, when set, is called at named points of a step (fault injection
	// in end-to-end tests: "before-apply", "applied-object-N", "before-patch",
	// "kubevirt-read" (the CR was read, a patch follows),
	// "waiting").
	Hook   func(point string)
	Logger *slog.Logger
}

// Executor acts on one cluster.
type Executor struct {
	cfg  Config
	kube clients
	dyn  dynamic.Interface
	log  *slog.Logger
}

// Resources the executor reads and writes.
var (
	crdGVR        = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	vwcGVR        = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}
	mwcGVR        = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}
)

// DefaultFailGrace tolerates a transient DeploymentFailed: virt-operator
// retries a failed pass after 5s, 10s, 20s, 40s, 80s (backing off to
// 1000s), so five retries, 155s, pass before a failure counts
// (docs/kubevirt.md, "Timing").
const DefaultFailGrace = 155 * time.Second

// New builds an executor. The rest config is used as given (in-cluster,
// kubeconfig, or impersonating in tests).
func New(restCfg *rest.Config, cfg Config) (*Executor, error) {
	if cfg.Namespace == "" {
		cfg.Namespace = "kubevirt"
	}
	if cfg.FieldManager == "" {
		cfg.FieldManager = "kvgitops"
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	if cfg.FailGrace == 0 {
		cfg.FailGrace = DefaultFailGrace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	rc := rest.CopyConfig(restCfg)
	rc.WarningHandler = rest.NoWarnings{} // v1alpha3 deprecation warnings are expected
	if rc.QPS == 0 {
		// client-go's default (5 QPS) would throttle one observation (a dozen
		// reads) for seconds; the agent is one small client.
		rc.QPS, rc.Burst = 50, 100
	}
	kube, err := newClients(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &Executor{cfg: cfg, kube: kube, dyn: dyn, log: cfg.Logger}, nil
}

// Namespace is KubeVirt's namespace.
func (e *Executor) Namespace() string { return e.cfg.Namespace }

func (e *Executor) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.cfg.CallTimeout)
}

func (e *Executor) hook(point string) {
	if e.cfg.Hook != nil {
		e.cfg.Hook(point)
	}
}

// apiError turns an API error into an *fault.Error: unavailability and conflicts
// are transient; denials by admission webhooks name the webhook; RBAC
// denials are terminal (the agent's own permissions are missing).
func apiError(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	var e *fault.Error
	if errors.As(err, &e) {
		return err
	}
	what := fmt.Sprintf(format, args...)
	msg := what + ": " + err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return fault.Transient(ReasonAPIUnavailable, err, "%s", msg)
	case isWebhookCallFailure(err):
		return fault.Transient(ReasonWebhookUnavailable, err, "%s", msg)
	case apierrors.IsForbidden(err):
		return fault.Stalled(ReasonForbidden, err, "%s", msg)
	}
	return fault.Transient(ReasonAPIUnavailable, err, "%s", msg)
}

func isWebhookCallFailure(err error) bool {
	return err != nil && containsAny(err.Error(), "failed calling webhook", "failed to call webhook")
}

// Hop describes one step's outcome.
type StepResult struct {
	Step          planner.Step
	StartedAt     time.Time
	FinishedAt    time.Time
	AlreadyDone   bool     // the cluster was already past the step
	OperatorFirst bool     // an ImageTag hop needed the operator manifest first
	Notes         []string // what happened, for the status file
	Workloads     WorkloadReport
}
