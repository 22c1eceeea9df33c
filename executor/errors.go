package executor

import (
	"errors"
	"fmt"
	"time"

	"github.com/kvgitops/kvgitops/redact"
)

// Reason classifies an executor failure for status files, events and
// metrics.
type Reason string

// Reasons.
const (
	ReasonStalePlan             Reason = "StalePlan"
	ReasonHopTimeout            Reason = "HopTimeout"
	ReasonHopFailed             Reason = "HopFailed"
	ReasonOperatorRolloutFailed Reason = "OperatorRolloutFailed"
	ReasonWorkloadDisrupted     Reason = "WorkloadDisrupted"
	ReasonManifestRejected      Reason = "ManifestRejected"
	ReasonDigestMismatch        Reason = "DigestMismatch"
	ReasonTooLarge              Reason = "TooLarge"
	ReasonMirrorTimeout         Reason = "MirrorTimeout"
	ReasonMirrorUnavailable     Reason = "MirrorUnavailable"
	ReasonHostNotAllowed        Reason = "HostNotAllowed"
	ReasonRateLimited           Reason = "RateLimited"
	ReasonAuthenticationFailed  Reason = "AuthenticationFailed"
	ReasonUninstallBlocked      Reason = "UninstallBlocked"
	ReasonStuckDeleting         Reason = "StuckDeleting"
	ReasonWebhookUnavailable    Reason = "WebhookUnavailable"
	ReasonAPIUnavailable        Reason = "APIUnavailable"
	ReasonForbidden             Reason = "Forbidden"
	ReasonAPIVersionNotServed   Reason = "APIVersionNotServed"
	ReasonInvalidStep           Reason = "InvalidStep"
	ReasonWorkloadsOutdated     Reason = "WorkloadsOutdated"
	ReasonNamespaceTerminating  Reason = "NamespaceTerminating"
	ReasonTeardownIncomplete    Reason = "TeardownIncomplete"
	// ReasonRestoreRefused: drift correction was asked to write a value
	// kvgitops never writes (another registry, another release's tag).
	ReasonRestoreRefused Reason = "RestoreRefused"
)

// Error is a failure with its retry semantics. Terminal errors stall: do not
// retry until the desired revision, the catalog or the cluster changes.
// Others are transient: retry with backoff (after RetryAfter when set).
type Error struct {
	Reason     Reason
	Message    string // sanitised, safe for status files and events
	Terminal   bool
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Message }
func (e *Error) Unwrap() error { return e.Err }

// Why, Stalls and RetryIn are the vocabulary the agent consumes from Git
// and the cluster alike.
func (e *Error) Why() string            { return string(e.Reason) }
func (e *Error) Stalls() bool           { return e.Terminal }
func (e *Error) RetryIn() time.Duration { return e.RetryAfter }

// ErrStalePlan is returned when the cluster no longer matches the state a
// step was planned from. Re-plan.
var ErrStalePlan = errors.New("stale plan")

func terminal(r Reason, err error, format string, args ...any) *Error {
	return &Error{Reason: r, Message: redact.Text(fmt.Sprintf(format, args...), redact.MaxMessage), Terminal: true, Err: err}
}

func transient(r Reason, err error, format string, args ...any) *Error {
	return &Error{Reason: r, Message: redact.Text(fmt.Sprintf(format, args...), redact.MaxMessage), Err: err}
}

// IsTerminal reports whether err should stall instead of being retried.
func IsTerminal(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Terminal
}

// ReasonOf returns the Reason of an *Error in err's chain, "" otherwise.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}
