package planner

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/redact"
)

// Reason is a machine-readable refusal reason, in the one error shape of
// package fault. The values are a contract: they appear in the status file
// and in `kvgitops plan -o json`. Every refusal stalls: nothing is retried
// until the desired file, the catalog or the cluster changes.
type Reason = fault.Reason

// Every reason the planner gives, refusals and the ring gate's, with what
// it means (docs/architecture.md, "Planning rules").
const (
	ReasonInvalidDesiredState      Reason = "InvalidDesiredState"
	ReasonUnknownVersion           Reason = "UnknownVersion"
	ReasonDowngradeNotSupported    Reason = "DowngradeNotSupported"
	ReasonUnsupportedSourceVersion Reason = "UnsupportedSourceVersion"
	ReasonWorkloadsExist           Reason = "WorkloadsExist"
	// ReasonWorkloadsCannotMove: a hop would shut down, restart or leave on
	// the old virt-launcher a running VMI the desired file does not accept.
	ReasonWorkloadsCannotMove Reason = "WorkloadsCannotMove"
	// ReasonMigrationsInFlight: live migrations run; nothing changes
	// KubeVirt until they finish (a warning, and the step waits).
	ReasonMigrationsInFlight Reason = "MigrationsInFlight"
	// ReasonStuckFinalizers: workloads are stuck Terminating on KubeVirt's
	// finalizers with nothing left to remove them, and the desired file
	// does not let kvgitops.
	ReasonStuckFinalizers Reason = "StuckFinalizers"
	ReasonNoUpgradePath   Reason = "NoUpgradePath"
	// ReasonAPIVersionNotServed: a step would apply a manifest with an API
	// the cluster does not serve (a v1beta1 CRD on Kubernetes 1.22+).
	ReasonAPIVersionNotServed Reason = "APIVersionNotServed"
	// ReasonImageTagStrategyBug: an ImageTag hop under a virt-operator that
	// ignores spec.imageTag when it writes the install strategy
	// (kubevirt#16050); it would report success for a mixed install.
	ReasonImageTagStrategyBug Reason = "ImageTagStrategyBug"
	// ReasonManagedElsewhere: another tool (HCO, Harvester, OLM, Flux,
	// Argo CD, Helm) manages KubeVirt here; kvgitops changes nothing.
	ReasonManagedElsewhere Reason = "ManagedElsewhere"
	// ReasonMultipleKubeVirts: more than one KubeVirt CR exists (or the only
	// one is outside KubeVirt's namespace): virt-operator ignores them all.
	ReasonMultipleKubeVirts Reason = "MultipleKubeVirts"
	// ReasonNotInFleet: the fleet file has no ring naming this cluster.
	ReasonNotInFleet Reason = "NotInFleet"
	// ReasonWaitingForRing: an earlier ring of the fleet has not run the
	// version for its soak yet (the ring gate; not a refusal).
	ReasonWaitingForRing Reason = "WaitingForRing"
	// ReasonRolloutHalted: a cluster of an earlier ring failed, or has had
	// no status it can prove for too long (the ring gate).
	ReasonRolloutHalted Reason = "RolloutHalted"
	// ReasonRolloutPaused: the fleet file pauses the rollout (spec.paused).
	ReasonRolloutPaused Reason = "RolloutPaused"
	// ReasonWaitingForPromotion: the cluster's ring starts on a manual
	// promotion (promotion: Manual) that spec.promotions does not give yet.
	ReasonWaitingForPromotion Reason = "WaitingForPromotion"
	// ReasonKubernetesUnsupported: the cluster's Kubernetes is outside the
	// target's supported range (a refusal under compatibility Strict).
	ReasonKubernetesUnsupported Reason = "KubernetesUnsupported"
	// ReasonKnownRisk: a hop meets a known upgrade risk that blocks it.
	ReasonKnownRisk Reason = "KnownRisk"
	// ReasonFeatureGateRemoved: the CR enables a feature gate the target
	// removed (a refusal under compatibility Strict).
	ReasonFeatureGateRemoved Reason = "FeatureGateRemoved"
)

// ErrInvalidDesired matches every error returned by [ParseDesired].
var ErrInvalidDesired = errors.New("invalid desired file")

// ErrInvalidCatalog matches every error returned by the catalog parsers.
var ErrInvalidCatalog = errors.New("invalid release catalog")

// FieldError is a rejection of the desired file. It names the field (a dotted
// path such as "spec.version", empty for the file as a whole), the offending
// value (sanitised and truncated), and what is wrong with it.
type FieldError struct {
	Field   string
	Value   string // as written; sanitised by Error
	Line    int    // 1-based; 0 when unknown
	Problem string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Field != "" {
		b.WriteString(e.Field)
	} else {
		b.WriteString("desired file")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	b.WriteString(": ")
	b.WriteString(e.Problem)
	if e.Value != "" {
		fmt.Fprintf(&b, ", got %s", redact.Quote(e.Value))
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalidDesired) true for every FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidDesired }

// Why, Stalls and RetryIn answer as every error kvgitops acts on does: an
// invalid file stalls until it changes.
func (e *FieldError) Why() string            { return string(ReasonInvalidDesiredState) }
func (e *FieldError) Stalls() bool           { return true }
func (e *FieldError) RetryIn() time.Duration { return 0 }

// RefusalError is a plan that cannot be made: the inputs are valid but the
// rules forbid what they ask for. Reason is one of the Reason constants.
type RefusalError struct {
	Reason  Reason
	Message string
	// Checks are the preflight checks made before the refusal, when a
	// check refused the plan.
	Checks []Check
	// Forecast is what the first hop would have done to the running VMIs.
	Forecast *WorkloadForecast
}

func (e *RefusalError) Error() string { return string(e.Reason) + ": " + e.Message }

// Why, Stalls and RetryIn: a refusal stalls until its inputs change.
func (e *RefusalError) Why() string            { return string(e.Reason) }
func (e *RefusalError) Stalls() bool           { return true }
func (e *RefusalError) RetryIn() time.Duration { return 0 }

func refuse(r Reason, format string, args ...any) error {
	return &RefusalError{Reason: r, Message: fmt.Sprintf(format, args...)}
}
