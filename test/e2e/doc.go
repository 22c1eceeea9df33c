// Package e2e drives the built kvgitops binary as a user would: commits to
// a real git server, a real apiserver with the virt-operator simulator, and
// the agent running as the ServiceAccount of deploy/ with exactly its RBAC.
// Every test asserts on what the simulator recorded, the Git history and
// the committed status file.
package e2e
