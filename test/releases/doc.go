// Package releases holds the release fixtures of the test ground: the real
// catalog of KubeVirt tags, a generator of per-release kubevirt-operator.yaml
// and kubevirt-cr.yaml with the real kinds, names and namespaces of
// docs/kubevirt.md, "Release manifests" for each era, the RBAC each release's components need, and an
// HTTPS server that serves them in the shape of GitHub's releases API and
// download URLs.
//
// It is test code: it never touches the network beyond loopback, and the
// product must not import it.
package releases
