package release

import "github.com/kvgitops/kvgitops/fault"

// Reasons of the release supply's failures, in the one error shape of
// package fault.
const (
	// ReasonManifestRejected: a manifest holds what no release's does (the
	// vetting lists every violation). Stalls.
	ReasonManifestRejected fault.Reason = "ManifestRejected"
	// ReasonDigestMismatch: a pinned release's bytes differ from its pin.
	// Stalls.
	ReasonDigestMismatch fault.Reason = "DigestMismatch"
	// ReasonTooLarge: a download over its cap. Stalls.
	ReasonTooLarge fault.Reason = "TooLarge"
	// ReasonMirrorTimeout: the release host was too slow. Retried.
	ReasonMirrorTimeout fault.Reason = "MirrorTimeout"
	// ReasonMirrorUnavailable: the release host failed or is not
	// configured. Retried.
	ReasonMirrorUnavailable fault.Reason = "MirrorUnavailable"
	// ReasonHostNotAllowed: a URL, redirect or address outside the allowed
	// hosts and networks. Stalls.
	ReasonHostNotAllowed fault.Reason = "HostNotAllowed"
	// ReasonRateLimited: the releases API limits the rate. Retried after
	// its Retry-After.
	ReasonRateLimited fault.Reason = "RateLimited"
	// ReasonAuthenticationFailed: the releases API refused the token.
	// Stalls.
	ReasonAuthenticationFailed fault.Reason = "AuthenticationFailed"
)
