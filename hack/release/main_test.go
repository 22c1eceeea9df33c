package main

import (
	"archive/tar"
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/kvgitops/kvgitops/hack/ociimage"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

var arches = []string{"amd64", "arm64", "s390x"}

// TestAReleaseVerifies builds a release of a small program for three
// platforms and checks it with the ecosystem's own readers: the OCI index
// holds one image per platform with that binary; each SBOM decodes as
// CycloneDX and names the main module, the toolchain and the module the
// program links; the image's signed payload names the index digest; every
// signature verifies against cosign.pub with sigstore's verifier, and a
// changed byte does not; SHA256SUMS covers every file.
func TestAReleaseVerifies(t *testing.T) {
	dir := t.TempDir()
	c := config{version: "v0.2.0-rc.1", ref: "registry.example.com/kvgitops", caBundle: filepath.Join(dir, "ca.crt"),
		key: filepath.Join(dir, "cosign.key"), out: filepath.Join(dir, "dist"), bins: binaries{}}
	if err := os.WriteFile(c.caBundle, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := generateKey(c.key); err != nil {
		t.Fatal(err)
	}
	for _, arch := range arches {
		bin := filepath.Join(dir, "hello-"+arch)
		build := exec.Command("go", "build", "-trimpath", "-o", bin, "./testdata/hello")
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build for %s: %v\n%s", arch, err, out)
		}
		c.bins["linux/"+arch] = bin
	}
	if err := release(c); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(c.out, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pubKey, err := cryptoutils.UnmarshalPEMToPublicKey(read("cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := signature.LoadVerifier(pubKey, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(name string) {
		t.Helper()
		sig, err := base64.StdEncoding.DecodeString(string(read(name + ".sig")))
		if err != nil {
			t.Fatalf("%s.sig: %v", name, err)
		}
		data := read(name)
		if err := verifier.VerifySignature(bytes.NewReader(sig), bytes.NewReader(data)); err != nil {
			t.Errorf("%s: the signature does not verify: %v", name, err)
		}
		data[len(data)/2] ^= 1
		if verifier.VerifySignature(bytes.NewReader(sig), bytes.NewReader(data)) == nil {
			t.Errorf("%s: a changed byte still verifies", name)
		}
	}

	// The image index.
	unpacked := filepath.Join(dir, "oci")
	if err := ociimage.Unpack(filepath.Join(c.out, "kvgitops-v0.2.0-rc.1.oci.tar"), unpacked); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(unpacked)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	topManifest, _ := top.IndexManifest()
	if len(topManifest.Manifests) != 1 || topManifest.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "registry.example.com/kvgitops:v0.2.0-rc.1" {
		t.Fatalf("layout %+v", topManifest.Manifests)
	}
	idx, err := top.ImageIndex(topManifest.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	var got []string
	for _, m := range im.Manifests {
		got = append(got, m.Platform.OS+"/"+m.Platform.Architecture)
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		if cf.Architecture != m.Platform.Architecture || cf.Config.Labels["org.opencontainers.image.version"] != "v0.2.0-rc.1" {
			t.Errorf("%s: config arch %s, labels %v", m.Platform.Architecture, cf.Architecture, cf.Config.Labels)
		}
		layers, _ := img.Layers()
		rc, _ := layers[0].Uncompressed()
		if bin := fileInTar(t, rc, "kvgitops"); !bytes.Equal(bin, mustRead(t, c.bins["linux/"+m.Platform.Architecture])) {
			t.Errorf("%s: the image's /kvgitops is not that platform's binary", m.Platform.Architecture)
		}
	}
	if slices.Sort(got); !slices.Equal(got, []string{"linux/amd64", "linux/arm64", "linux/s390x"}) {
		t.Errorf("platforms %v", got)
	}

	// The image's signed payload names the index.
	var sp payload.SimpleContainerImage
	if err := json.Unmarshal(read("kvgitops-v0.2.0-rc.1.image.payload.json"), &sp); err != nil {
		t.Fatal(err)
	}
	digest, _ := idx.Digest()
	if sp.Critical.Image.DockerManifestDigest != digest.String() || sp.Critical.Identity.DockerReference != "registry.example.com/kvgitops" ||
		sp.Critical.Type != payload.CosignSignatureType {
		t.Errorf("payload %+v, want the index %s", sp.Critical, digest)
	}
	verify("kvgitops-v0.2.0-rc.1.image.payload.json")

	// The SBOMs.
	for _, arch := range arches {
		name := "kvgitops-v0.2.0-rc.1.linux-" + arch + ".sbom.cdx.json"
		var bom cdx.BOM
		if err := cdx.NewBOMDecoder(bytes.NewReader(read(name)), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if bom.Metadata == nil || bom.Metadata.Component.Version != "v0.2.0-rc.1" || bom.Metadata.Component.PackageURL != "pkg:golang/github.com/kvgitops/kvgitops@v0.2.0-rc.1" {
			t.Errorf("%s: metadata %+v", name, bom.Metadata)
		}
		var names []string
		for _, comp := range *bom.Components {
			names = append(names, comp.Name+"@"+comp.Version)
		}
		if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "github.com/google/go-cmp@v") }) ||
			!slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "stdlib@go1.") }) {
			t.Errorf("%s: components %v lack go-cmp or the toolchain", name, names)
		}
		verify(name)
	}

	// SHA256SUMS.
	sums := string(read("SHA256SUMS"))
	entries, _ := os.ReadDir(c.out)
	for _, e := range entries {
		if e.Name() == "SHA256SUMS" {
			continue
		}
		sum := sha256.Sum256(read(e.Name()))
		if !strings.Contains(sums, hex.EncodeToString(sum[:])+"  "+e.Name()+"\n") {
			t.Errorf("SHA256SUMS lacks %s (or its sum)", e.Name())
		}
	}
}

// TestAReleaseNeedsATagAndAKey: an untagged version or no key builds
// nothing.
func TestAReleaseNeedsATagAndAKey(t *testing.T) {
	for _, c := range []config{
		{version: "4ba49bd-dirty", key: "k", bins: binaries{"linux/amd64": "x"}},
		{version: "v0.2.0", bins: binaries{"linux/amd64": "x"}},
	} {
		c.out = t.TempDir()
		err := release(c)
		if err == nil || !(strings.Contains(err.Error(), "not a release tag") || strings.Contains(err.Error(), "no -key")) {
			t.Errorf("%+v: %v", c, err)
		}
		if entries, _ := os.ReadDir(c.out); len(entries) != 0 {
			t.Errorf("%+v wrote %d files", c, len(entries))
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fileInTar is the content of name in a tar stream.
func fileInTar(t *testing.T, r io.Reader, name string) []byte {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in the layer: %v", name, err)
		}
		if h.Name == name {
			b, _ := io.ReadAll(tr)
			return b
		}
	}
}
