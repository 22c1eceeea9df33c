// Package registry runs in-process OCI registries for tests
// (go-containerregistry's registry on loopback) and fills them with the
// images a KubeVirt release needs, built by the test (random layers; one
// multi-platform index).
package registry
