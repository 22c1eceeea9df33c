// Package fault is kvgitops's one error shape: a failure with a
// machine-readable reason, a sanitised message, and whether to stall (try
// again only when the desired file, the catalog or the cluster changes) or
// retry with back-off, after at least a given wait. Git, the cluster and
// the release supply all fail in it; the planner's refusals answer the
// same questions (Why, Stalls, RetryIn); each package keeps its own reason
// constants, the agent consumes them all alike. (Flux's
// internal/error: Stalling vs Waiting.)
//
// It must not import anything of kvgitops but redact, nor do I/O.
package fault
