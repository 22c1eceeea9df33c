// Package ociimage builds kvgitops's container image without a Docker
// engine and writes images and multi-platform indexes as OCI image
// archives (hack/image, hack/release).
//
// The image is a single layer on an empty base: the static binary at
// /kvgitops, a CA bundle, /etc/passwd with the nonroot user 65532 and an
// empty /tmp. It runs as 65532:65532 with /kvgitops as entrypoint.
package ociimage
