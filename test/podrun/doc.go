// Package podrun runs the container of a rendered pod template as the
// kubelet and a container runtime would, on this host and without either:
// a stand-in for a node where a test needs exactly what a manifest says to
// run, not a real node's minutes (test/cluster has the real one).
//
// What it does as they do: the image's files (an OCI archive from make
// image) as the root filesystem, read-only when the container says so;
// each volume (Secrets and ConfigMaps read from the apiserver at start, a
// missing required one refusing to start as the kubelet does, emptyDirs)
// mounted at its mountPath, read-only where marked; the service account's
// token, CA and namespace where client-go looks; the environment from the
// image, the Services' links, envFrom and env (field references resolved);
// the user and group of the security context (runAsNonRoot checked), no
// capabilities; the image's entrypoint with the container's args; its own
// network namespace, where the apiserver and the test's servers are
// reachable at their host addresses through forwarders and its ports are
// reached with Dial.
//
// What it does not: seccomp, resource limits, probes (the test polls the
// probe paths itself), restarts, $(VAR) expansion (refused), projected
// volumes other than the token, subPath (refused).
//
// Needs root, util-linux (nsenter, unshare, mount) and iproute2.
//
// Must not: leave a process, mount or network namespace behind after Stop.
package podrun
