package main

import (
	"context"
	"fmt"
	"io"
)

// runCommand runs the agent. It arrives with the agent package.
func runCommand(_ context.Context, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "kvgitops run: the agent is not built yet")
	return exitRefused
}
