// Package executor is everything kvgitops does to the cluster.
//
// It observes the cluster ([Executor.Observe]): the KubeVirt CR, the
// virt-operator Deployment, VMs and VMIs, leftover APIServices and webhook
// configurations. It applies the release manifests package release fetched
// and vetted (through [release.Client]), after a server-side dry run of
// every object. It runs one planned step at a time ([Executor.Run]): each step
// re-observes first and refuses a stale precondition; writes are
// server-side applies (field manager "kvgitops") or JSON patches with a
// resourceVersion test; waits are watch-driven and bounded by the hop
// deadline; workloads are checked across every hop.
//
// It is the only package that imports client-go. It must not decide what to
// do (that is the planner's job) nor log errors it returns: it returns
// typed errors (*fault.Error) that say whether to retry or stall.
package executor
