// Package mirror prepares an air-gapped site for a path of KubeVirt
// releases (`kvgitops mirror`): for each release it lists every image the
// release's virt-operator deploys (release.Manifest.Images), copies each
// into the site's registry or an OCI layout (go-containerregistry; indexes
// whole, digests kept), rewrites kubevirt-operator.yaml to the mirror,
// vets the rewritten file as the agent will (refusing to write one the
// agent would refuse), and writes what the agent's configuration needs:
// the sha256 pins, the registry to allow, the admission policy's
// registries.
//
// An I/O shell like the executor: no decisions beyond KubeVirt's own
// naming rules, which live in package release.
//
// It must not write a manifest that names an image it did not copy, write a
// manifest the agent's vetting refuses, log, or touch a cluster (it imports
// no client-go, no Git, no logger).
package mirror
