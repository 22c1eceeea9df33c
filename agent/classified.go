package agent

import (
	"errors"
	"time"
)

// classified is the one error vocabulary the agent consumes, from Git and
// from the cluster alike (gitsource.Error and executor.Error satisfy it): a
// machine-readable reason, whether to stall (try again only when the
// desired file, the catalog or the cluster changes) or retry with back-off,
// and the least wait before a retry (a rate limit's Retry-After).
type classified interface {
	error
	Why() string
	Stalls() bool
	RetryIn() time.Duration
}

func classify(err error) (classified, bool) {
	var c classified
	ok := errors.As(err, &c)
	return c, ok
}

// stalls reports whether err must not be retried until something changes.
func stalls(err error) bool {
	c, ok := classify(err)
	return ok && c.Stalls()
}

// why is err's reason, "" when it has none.
func why(err error) string {
	if c, ok := classify(err); ok {
		return c.Why()
	}
	return ""
}

// retryIn is the least wait err asks for before a retry.
func retryIn(err error) time.Duration {
	if c, ok := classify(err); ok {
		return c.RetryIn()
	}
	return 0
}
