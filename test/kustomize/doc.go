// Package kustomize renders deploy/ as a user's overlay does, with
// kustomize itself (its Go API): deploy/ as the base, a config patched into
// its ConfigMap, optional components. The deploy conformance test
// (test/conformance) and the real node (test/cluster) install what it
// renders.
package kustomize
