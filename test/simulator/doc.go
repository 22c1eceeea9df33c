// Package simulator is a virt-operator that runs against a real
// kube-apiserver. KubeVirt itself cannot run here (no kubelet, no container
// runtime), so tests of the agent and executor meet this instead, and its
// fidelity is how they catch mistakes.
//
// It behaves as ../shared/kubevirt/docs/kubevirt.md describes, version by version:
// the running operator's version comes from the virt-operator Deployment
// (image tag, or KUBEVIRT_VERSION for a digest), and only once that
// Deployment's rollout is ready; the KubeVirt CR gets the real status fields,
// conditions, annotations and finalizer strings of that operator's era;
// component objects, APIServices and webhook configurations are created with
// the real names; deletion follows the real order and leaves the real
// leftovers behind for v0.17.0–v0.26.0.
//
// It also enforces what real KubeVirt breaks on: a hop that skips a minor or
// downgrades fails with DeploymentFailed; component RBAC is written while
// impersonating the operator's ServiceAccount, so an ImageTag hop whose
// target needs rules the running operator lacks gets the apiserver's genuine
// "attempting to grant RBAC permissions not currently held"; the
// virt-operator-validator webhook is served by the simulator and fails
// closed once the operator is gone, so a CR stays Terminating and a
// finalizer patch is rejected exactly as in a real cluster.
//
// Deviations, each for a reason: webhook configurations point at the
// simulator's own HTTPS server by URL (a real one names a Service); the
// simulator decides readiness with timers and writes Deployment and
// DaemonSet status itself (no kubelet); install-strategy Jobs and ConfigMaps
// are not created. The APIServices point at the virt-api Service, which has
// no endpoints, so discovery of subresources.kubevirt.io fails the way a
// real leftover does; clients must tolerate that.
//
// Faults can be injected: slow hops, stalled hops, a disrupted VMI, a
// crash-looping operator. Every transition is recorded for tests to assert
// on.
package simulator
