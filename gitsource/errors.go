package gitsource

import (
	"errors"
	"fmt"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/redact"
)

// Reasons of Git failures, in the one error shape of package fault (Flux's
// names where Flux has one). Each says whether it stalls.
const (
	// ReasonGitUnavailable: the server cannot be reached or answered
	// badly. Retried.
	ReasonGitUnavailable fault.Reason = "GitUnavailable"
	// ReasonAuthenticationFailed: the credentials were refused. Stalls.
	ReasonAuthenticationFailed fault.Reason = "AuthenticationFailed"
	// ReasonHostKeyUnknown: the SSH host key is not in known_hosts. Stalls.
	ReasonHostKeyUnknown fault.Reason = "HostKeyUnknown"
	// ReasonDesiredFileMissing: the file (or the branch) does not exist.
	// Stalls.
	ReasonDesiredFileMissing fault.Reason = "DesiredFileMissing"
	// ReasonNotRegularFile: a symlink, directory or submodule where a file
	// was expected. Stalls.
	ReasonNotRegularFile fault.Reason = "NotRegularFile"
	// ReasonTooLarge: a file over what kvgitops reads. Stalls.
	ReasonTooLarge fault.Reason = "TooLarge"
	// ReasonRepoTooLarge: a fetch over its byte caps. Stalls.
	ReasonRepoTooLarge fault.Reason = "RepoTooLarge"
	// ReasonSignatureInvalid: the commit that set a signed file is
	// unsigned, signed by an untrusted key, or signed twice. Stalls.
	ReasonSignatureInvalid fault.Reason = "SignatureInvalid"
	// ReasonHistoryRewritten: the branch no longer descends from what was
	// seen. Stalls.
	ReasonHistoryRewritten fault.Reason = "HistoryRewritten"
	// ReasonStaleSignedContent: older signed content brought back. Stalls.
	ReasonStaleSignedContent fault.Reason = "StaleSignedContent"
	// ReasonStatusPushForbidden: the server refuses the status push
	// (permissions, branch protection, a hook). Stalls the status only.
	ReasonStatusPushForbidden fault.Reason = "StatusPushForbidden"
	// ReasonStatusPushFailing: the push keeps losing the race or the
	// server fails. Retried.
	ReasonStatusPushFailing fault.Reason = "StatusPushFailing"
	// ReasonInvalidConfig: a URL, branch, path or key that cannot be used.
	// Stalls.
	ReasonInvalidConfig fault.Reason = "InvalidConfig"
)

// ErrUnchanged is returned by WriteFile when the file already holds the
// bytes: no commit was made.
var ErrUnchanged = errors.New("status file unchanged")

// errorf builds a fault whose message passes through the scrubber.
func (s *Source) errorf(r fault.Reason, stall bool, err error, format string, args ...any) *fault.Error {
	msg := fmt.Sprintf(format, args...)
	if err != nil {
		msg += ": " + err.Error()
	}
	return &fault.Error{Reason: r, Stall: stall, Message: redact.Text(s.scrub(msg), redact.MaxMessage), Err: err}
}

func (s *Source) scrub(msg string) string {
	if s.remote == nil {
		return msg
	}
	return s.remote.scrub(msg)
}

// credentialsError: the credentials cannot be read or used (a rotated
// Secret half written, a key that does not parse): a configuration error
// the next change of the Secret may fix.
func (s *Source) credentialsError(err error) error {
	return s.errorf(ReasonInvalidConfig, false, err, "the Git credentials")
}
