package gitsource

import (
	"errors"
	"fmt"
	"time"

	"github.com/kvgitops/kvgitops/redact"
)

// Reason classifies a failure for the status file and metrics.
type Reason string

// Reasons (Flux's names where Flux has one).
const (
	ReasonGitUnavailable       Reason = "GitUnavailable"
	ReasonAuthenticationFailed Reason = "AuthenticationFailed"
	ReasonHostKeyUnknown       Reason = "HostKeyUnknown"
	ReasonDesiredFileMissing   Reason = "DesiredFileMissing"
	ReasonNotRegularFile       Reason = "NotRegularFile"
	ReasonTooLarge             Reason = "TooLarge"
	ReasonRepoTooLarge         Reason = "RepoTooLarge"
	ReasonSignatureInvalid     Reason = "SignatureInvalid"
	ReasonHistoryRewritten     Reason = "HistoryRewritten"
	ReasonStaleSignedContent   Reason = "StaleSignedContent"
	ReasonStatusPushForbidden  Reason = "StatusPushForbidden"
	ReasonStatusPushFailing    Reason = "StatusPushFailing"
	ReasonInvalidConfig        Reason = "InvalidConfig"
)

// Error is a Git failure with its retry semantics: Terminal errors stall
// until the revision or the configuration changes; others are retried with
// backoff.
type Error struct {
	Reason   Reason
	Message  string // scrubbed of credentials, sanitised
	Terminal bool
	err      error
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Message }
func (e *Error) Unwrap() error { return e.err }

// Why, Stalls and RetryIn are the vocabulary the agent consumes from Git
// and the cluster alike.
func (e *Error) Why() string            { return string(e.Reason) }
func (e *Error) Stalls() bool           { return e.Terminal }
func (e *Error) RetryIn() time.Duration { return 0 }

// Stall is a terminal error for a reason found outside this package (the
// agent's ancestry and signed-content checks); the message is sanitised.
func Stall(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Terminal: true, Message: redact.Text(fmt.Sprintf(format, args...), redact.MaxMessage)}
}

// ErrUnchanged is returned by WriteFile when the file already holds the
// bytes: no commit was made.
var ErrUnchanged = errors.New("status file unchanged")

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

// errorf builds an *Error whose message passes through the scrubber.
func (s *Source) errorf(r Reason, terminal bool, err error, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if err != nil {
		msg += ": " + err.Error()
	}
	return &Error{Reason: r, Terminal: terminal, Message: redact.Text(s.scrub(msg), redact.MaxMessage), err: err}
}

func (s *Source) scrub(msg string) string { return s.scrubber.Scrub(msg) }
