package fault_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
)

// TestOneShapeForEveryError: wrapped however deep, a fault answers the
// three questions; the planner's refusals and invalid files answer them
// too; anything else has no reason and is retried.
func TestOneShapeForEveryError(t *testing.T) {
	_, refusal := planner.ParseDesired([]byte("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n  version: 1.10\n"))
	for _, c := range []struct {
		name   string
		err    error
		reason fault.Reason
		stalls bool
		wait   time.Duration
	}{
		{"a stall", fault.Stalled("Broken", nil, "it is %s", "broken"), "Broken", true, 0},
		{"wrapped twice", fmt.Errorf("step 1/2: %w", fmt.Errorf("apply: %w", fault.Transient("Busy", errors.New("x"), "busy"))), "Busy", false, 0},
		{"a rate limit", &fault.Error{Reason: "RateLimited", RetryAfter: time.Minute}, "RateLimited", false, time.Minute},
		{"an invalid desired file", refusal, planner.ReasonInvalidDesiredState, true, 0},
		{"anything else", errors.New("plain"), "", false, 0},
	} {
		if got := fault.ReasonOf(c.err); got != c.reason || fault.Stalls(c.err) != c.stalls || fault.RetryIn(c.err) != c.wait {
			t.Errorf("%s: reason %q stalls %t wait %s, want %q %t %s", c.name, got, fault.Stalls(c.err), fault.RetryIn(c.err), c.reason, c.stalls, c.wait)
		}
	}
	msg := fault.Stalled("X", nil, "line\nbreak\x1b[31m").Message
	if msg != "line break [31m" {
		t.Errorf("the message is not sanitised: %q", msg)
	}
}
