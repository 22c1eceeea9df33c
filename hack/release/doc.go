// Command release builds a kvgitops release into a directory, without a
// Docker engine: one multi-platform image (an OCI image index, one image
// per -binary) as an OCI archive; a CycloneDX SBOM per platform, from the
// binary's own build information; cosign-compatible signatures, made with
// sigstore's signing package and an ECDSA P-256 key: of the image (cosign's
// simple-signing payload naming the index digest) and of each SBOM, both
// verifiable offline (`cosign verify-blob --key cosign.pub --signature
// <file>.sig <file>`); the public key; and SHA256SUMS.
//
//	go run ./hack/release -version v0.2.0 -key cosign.key \
//	  -binary linux/amd64=dist/kvgitops-linux-amd64 … -o dist/v0.2.0
//
// `-genkey cosign.key` writes a new key pair (cosign.key, cosign.pub).
package main
