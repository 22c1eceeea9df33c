// Package release is kvgitops's release supply, the counterpart of
// clusterctl's client/repository: the release catalog (GitHub's releases
// API or a file), a hardened HTTPS client for downloads (allowed hosts and
// networks checked at every redirect and dial, byte caps, deadlines), and
// the vetting of a release's kubevirt-operator.yaml and kubevirt-cr.yaml
// against what a KubeVirt release holds ([Vet]) before anything is applied,
// with sha256 pins and image mirrors. It also reads versions and registries
// out of image references as virt-operator does.
//
// It must not import client-go or go-git, touch the cluster, or log; `kvgitops
// release check` and offline `kvgitops plan` use it alone.
package release
