package fault

import (
	"errors"
	"fmt"
	"time"

	"github.com/kvgitops/kvgitops/redact"
)

// Reason is a machine-readable cause, a contract: it appears in status
// files, Events, metrics and `kvgitops plan -o json`. Each package declares
// its own.
type Reason string

// Error is a failure with its retry semantics.
type Error struct {
	Reason  Reason
	Message string // sanitised: safe for status files, Events and logs
	// Stall: do not retry until the input changes (the desired file, the
	// catalog, the cluster); otherwise retry with back-off.
	Stall bool
	// RetryAfter is the least wait before a retry (a rate limit's
	// Retry-After); zero for the back-off alone.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Message }
func (e *Error) Unwrap() error { return e.Err }

// Why, Stalls and RetryIn are the questions the agent asks every error.
func (e *Error) Why() string            { return string(e.Reason) }
func (e *Error) Stalls() bool           { return e.Stall }
func (e *Error) RetryIn() time.Duration { return e.RetryAfter }

// Stalled is an error that stalls until the input changes; err, when set,
// is wrapped (not echoed).
func Stalled(r Reason, err error, format string, args ...any) *Error {
	return &Error{Reason: r, Message: redact.Text(fmt.Sprintf(format, args...), redact.MaxMessage), Stall: true, Err: err}
}

// Transient is an error to retry with back-off.
func Transient(r Reason, err error, format string, args ...any) *Error {
	return &Error{Reason: r, Message: redact.Text(fmt.Sprintf(format, args...), redact.MaxMessage), Err: err}
}

// Classified is what every error kvgitops acts on answers: the agent asks
// these three questions, of Git's, the cluster's, the release supply's
// errors and the planner's refusals alike.
type Classified interface {
	error
	Why() string
	Stalls() bool
	RetryIn() time.Duration
}

// Of finds the classified error in err's chain.
func Of(err error) (Classified, bool) {
	var c Classified
	ok := errors.As(err, &c)
	return c, ok
}

// Stalls reports whether err must not be retried until something changes.
func Stalls(err error) bool {
	c, ok := Of(err)
	return ok && c.Stalls()
}

// Why is err's reason, "" when it has none.
func Why(err error) string {
	if c, ok := Of(err); ok {
		return c.Why()
	}
	return ""
}

// RetryIn is the least wait err asks for before a retry.
func RetryIn(err error) time.Duration {
	if c, ok := Of(err); ok {
		return c.RetryIn()
	}
	return 0
}

// ReasonOf is the Reason of err's classified error, "" when it has none.
func ReasonOf(err error) Reason { return Reason(Why(err)) }
