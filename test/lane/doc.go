// Package lane tests kvgitops against KubeVirt's real virt-operator, built
// from the Go module proxy (hack/virt-operator.sh, `make operators`) for the
// releases of hack/virt-operator-tags.tsv, instead of the simulator.
//
// The whole lane runs inside a network namespace the test makes for itself
// (the test binary re-executes under `unshare --net`): the test apiserver
// and etcd, the git and release servers, the agent, the operator and the
// stand-ins of package standin for what a cluster does besides its API
// server. The apiserver reaches the operator's webhooks and the virt-api
// stand-in through EndpointSlices on private addresses of that namespace's
// loopback; no packet leaves it. Where the namespace cannot be made the
// tests skip saying so — on stderr even without -v — except when CI is set
// to anything, where they fail.
//
// Limits: no VMs, no real virt-api, virt-controller or virt-handler, no
// real pod rollouts, garbage collection only approximated. It proves what
// virt-operator itself does with what kvgitops applies: install strategies,
// objects, status, conditions, finalizers, the deletion order; and, the
// same scenario run on the simulator, where the simulator differs from it
// (simulator.KnownDifferences).
package lane
