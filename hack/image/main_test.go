package main

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/kvgitops/kvgitops/hack/ociimage"
)

// TestArchiveConfig builds an image and reads its config back from the OCI
// archive, as a registry or runtime would.
func TestArchiveConfig(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kvgitops")
	if err := os.WriteFile(bin, []byte("#!/not/really\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "kvgitops.tar")
	if err := build(bin, ca, "ghcr.io/kvgitops/kvgitops:test", "v9.9.9", out); err != nil {
		t.Fatal(err)
	}
	unpacked := filepath.Join(dir, "oci")
	if err := ociimage.Unpack(out, unpacked); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(unpacked)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	man, err := idx.IndexManifest()
	if err != nil || len(man.Manifests) != 1 || man.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "ghcr.io/kvgitops/kvgitops:test" {
		t.Fatalf("index %+v, %v", man, err)
	}
	img, err := idx.Image(man.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if !slices.Equal(c.Entrypoint, []string{"/kvgitops"}) || c.User != "65532:65532" || cfg.OS != "linux" ||
		c.Labels["org.opencontainers.image.version"] != "v9.9.9" || c.Labels["org.opencontainers.image.source"] == "" {
		t.Errorf("config %+v", cfg)
	}
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers", len(layers))
	}
	// A runtime unpacks only an image whose config lists its layers' diff IDs.
	if diffID, err := layers[0].DiffID(); err != nil || !slices.Equal(cfg.RootFS.DiffIDs, []v1.Hash{diffID}) {
		t.Errorf("rootfs.diff_ids %v, want the layer's %v (%v)", cfg.RootFS.DiffIDs, diffID, err)
	}
	if man.Manifests[0].Annotations["io.containerd.image.name"] != "ghcr.io/kvgitops/kvgitops:test" {
		t.Errorf("annotations %v: ctr import names the image by io.containerd.image.name", man.Manifests[0].Annotations)
	}
	rc, _ := layers[0].Uncompressed()
	defer rc.Close()
	files := map[string]bool{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = true
	}
	for _, f := range []string{"kvgitops", "etc/ssl/certs/ca-certificates.crt", "etc/passwd", "tmp/"} {
		if !files[f] {
			t.Errorf("layer lacks %s", f)
		}
	}
}
