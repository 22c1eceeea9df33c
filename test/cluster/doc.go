//go:build realnode

// Package cluster starts a real single-node Kubernetes cluster for a test
// binary (issue 23; docs/development.md, "A real node"): etcd and
// kube-apiserver from the test control plane (hack/testbin.sh), kubelet,
// kube-controller-manager, kube-scheduler and kube-proxy built by
// hack/node.sh, Debian's containerd, runc and CNI plugins — every process
// inside a network namespace the cluster creates, so nothing listens
// outside it and two clusters can run at once.
//
// Images are OCI layouts written by the package and imported with ctr; pods
// use imagePullPolicy Never. Stop leaves nothing behind: processes, mounts,
// the namespace, cgroups.
//
// The package builds only with the realnode tag (make node-lane): it needs
// root, the node binaries and Debian's packages.
//
// Must not: send traffic outside its namespace; leave a process, mount,
// namespace or cgroup behind.
package cluster
