package planner

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kvgitops/kvgitops/redact"
)

// Reason is a machine-readable refusal reason. The values are a contract:
// they appear in the status file and in `kvgitops plan -o json`.
type Reason string

// The refusal reasons of docs/architecture.md, "Planning rules".
const (
	ReasonInvalidDesiredState      Reason = "InvalidDesiredState"
	ReasonUnknownVersion           Reason = "UnknownVersion"
	ReasonDowngradeNotSupported    Reason = "DowngradeNotSupported"
	ReasonUnsupportedSourceVersion Reason = "UnsupportedSourceVersion"
	ReasonWorkloadsExist           Reason = "WorkloadsExist"
	ReasonNoUpgradePath            Reason = "NoUpgradePath"
	// ReasonAPIVersionNotServed: a step would apply a manifest with an API
	// the cluster does not serve (a v1beta1 CRD on Kubernetes 1.22+).
	ReasonAPIVersionNotServed Reason = "APIVersionNotServed"
	// ReasonImageTagStrategyBug: an ImageTag hop under a virt-operator that
	// ignores spec.imageTag when it writes the install strategy
	// (kubevirt#16050); it would report success for a mixed install.
	ReasonImageTagStrategyBug Reason = "ImageTagStrategyBug"
	// ReasonMultipleKubeVirts: more than one KubeVirt CR exists (or the only
	// one is outside KubeVirt's namespace): virt-operator ignores them all.
	ReasonMultipleKubeVirts Reason = "MultipleKubeVirts"
	// ReasonNotInFleet: the fleet file has no ring naming this cluster.
	ReasonNotInFleet Reason = "NotInFleet"
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

// RefusalError is a plan that cannot be made: the inputs are valid but the
// rules forbid what they ask for. Reason is one of the Reason constants.
type RefusalError struct {
	Reason  Reason
	Message string
	// Checks are the preflight checks made before the refusal, when a
	// check refused the plan.
	Checks []Check
}

func (e *RefusalError) Error() string { return string(e.Reason) + ": " + e.Message }

func refuse(r Reason, format string, args ...any) error {
	return &RefusalError{Reason: r, Message: fmt.Sprintf(format, args...)}
}

// ReasonOf classifies an error from this package: the refusal reason of a
// RefusalError, InvalidDesiredState for a FieldError, "" otherwise.
func ReasonOf(err error) Reason {
	var re *RefusalError
	if errors.As(err, &re) {
		return re.Reason
	}
	if errors.Is(err, ErrInvalidDesired) {
		return ReasonInvalidDesiredState
	}
	return ""
}
