package executor

import "context"

type heartbeatKey struct{}

// WithHeartbeat returns ctx carrying beat, which the executor's waits call
// each time they look again (a watch event, a recheck, a poll): a caller's
// liveness check sees a long, bounded wait turning, and tells it from a
// wedged one.
func WithHeartbeat(ctx context.Context, beat func()) context.Context {
	return context.WithValue(ctx, heartbeatKey{}, beat)
}

// heartbeat calls ctx's beat, if any.
func heartbeat(ctx context.Context) {
	if beat, ok := ctx.Value(heartbeatKey{}).(func()); ok {
		beat()
	}
}
