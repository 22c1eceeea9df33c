// Package stack assembles the whole test ground around the real kvgitops
// binary, for `make demo` and the end-to-end tests: the simulator on a real
// apiserver, the release server, a git server with a Flux-style Git secret,
// a kubeconfig, and agent processes started with the flags a user would
// give, whose JSON logs can be followed.
//
// It is test code: the product must not import it.
package stack
