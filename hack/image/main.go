// Command image builds the kvgitops container image without a Docker engine
// (package ociimage) and writes it as an OCI image archive (load it with
// `podman load`, `skopeo copy oci-archive:...` or `crane push`).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kvgitops/kvgitops/hack/ociimage"
)

func main() {
	binary := flag.String("binary", "", "static linux/amd64 kvgitops binary")
	tag := flag.String("tag", "ghcr.io/kvgitops/kvgitops:dev", "image reference recorded in the archive")
	version := flag.String("version", "dev", "version label")
	caFile := flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to include")
	out := flag.String("o", "dist/kvgitops.tar", "output OCI archive")
	flag.Parse()
	if err := build(*binary, *caFile, *tag, *version, *out); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", *out)
}

// build writes the image for binary to out.
func build(binary, caFile, tag, version, out string) error {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	img, err := ociimage.Image(bin, ca, version, "amd64")
	if err != nil {
		return err
	}
	return ociimage.WriteOCIArchive(img, tag, out)
}
