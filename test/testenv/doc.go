// Package testenv starts the test control plane: a real kube-apiserver and
// etcd (built by `make testbin` from the Go module proxy) through
// controller-runtime's envtest, with the RBAC authorizer on, one per test
// package. It hands tests a rest.Config for the admin user and configs that
// impersonate a ServiceAccount, so RBAC is exercised for real.
//
// Missing binaries fail the tests (never skip them); `go test -short` skips
// the tests that need the control plane.
package testenv
