// Package conformance checks deploy/ as written: kustomize renders it (the
// base, each optional component), and the deploy conformance test runs the
// agent with exactly the rendered pod — its command line, environment,
// mounts, user and read-only root (test/podrun) — against the test control
// plane as the ServiceAccount deploy/ binds, until it has committed its
// status to a real git server. It is the test that would have caught an
// agent that exits at start without an optional Secret.
//
// Needs root (podrun's namespaces), like test/cluster, but no node: it runs
// in make test beside the other packages in seconds.
package conformance
