package main

import (
	"context"
	"runtime/debug"
	"time"
)

// trimMemory hands memory the garbage collector freed back to the OS once
// a minute: the agent is idle between polls, and a hop or a read leaves
// heap behind that the runtime would otherwise keep for minutes. A full
// collection of a heap this small costs well under a millisecond.
func trimMemory(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			debug.FreeOSMemory()
		}
	}
}
