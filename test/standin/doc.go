// Package standin stands in for what a cluster does besides its API server,
// so that KubeVirt's real virt-operator runs against the test control plane
// (kube-apiserver and etcd only): the kubelet and the workload controllers
// (Pods from Deployment and DaemonSet templates, Running and Ready, their
// status; stale Pods removed when a template changes), the Job controller
// for virt-operator's install-strategy Jobs (run with the virt-operator
// binary matching the Job's image tag, then marked complete), the garbage
// collector (foreground-deletion finalizers dropped, orphans removed), the
// namespace controller, EndpointSlices for the webhook Services, virt-api
// (an allow-all admission responder with the operator's own certificate
// and empty discovery for its APIServices), and the kubelet running the
// operator itself: exactly one virt-operator process for the Deployment's
// image tag, with its container's environment.
//
// It does not run VMs, real rollouts or any KubeVirt component but the
// operator: it proves what virt-operator itself does (strategy, objects,
// status, conditions, finalizers, deletion order). Every address it serves
// on is one the test configures, inside a network namespace the test made.
package standin
