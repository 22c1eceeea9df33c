package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/kvgitops/kvgitops/hack/ociimage"
)

// binaries is the repeated -binary os/arch=path flag.
type binaries map[string]string

func (b binaries) String() string { return fmt.Sprint(map[string]string(b)) }
func (b binaries) Set(v string) error {
	platform, path, ok := strings.Cut(v, "=")
	if !ok || !strings.HasPrefix(platform, "linux/") {
		return fmt.Errorf("-binary %q: want linux/<arch>=<path>", v)
	}
	b[platform] = path
	return nil
}

// semver is the version a release may carry: a tag, vMAJOR.MINOR.PATCH with
// an optional pre-release.
var semver = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)

type config struct {
	version, ref, caBundle, key, out string
	bins                             binaries
}

func main() {
	c := config{bins: binaries{}}
	flag.StringVar(&c.version, "version", "", "the release's semantic version, a tag (vX.Y.Z)")
	flag.StringVar(&c.ref, "ref", "ghcr.io/kvgitops/kvgitops", "the image's repository")
	flag.StringVar(&c.caBundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to include in the image")
	flag.StringVar(&c.key, "key", "", "PEM ECDSA P-256 private key to sign with")
	flag.StringVar(&c.out, "o", "dist/release", "output directory")
	flag.Var(c.bins, "binary", "linux/<arch>=<static kvgitops binary> (repeat per platform)")
	genkey := flag.String("genkey", "", "write a new key pair to this path (and .pub beside it) and exit")
	flag.Parse()
	var err error
	if *genkey != "" {
		err = generateKey(*genkey)
	} else {
		err = release(c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

// release writes every artifact of c into c.out.
func release(c config) error {
	if !semver.MatchString(c.version) {
		return fmt.Errorf("version %q is not a release tag (vMAJOR.MINOR.PATCH): tag the commit (git tag v0.2.0) and build from it", c.version)
	}
	if len(c.bins) == 0 {
		return errors.New("no -binary given")
	}
	signer, pub, err := loadKey(c.key)
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(c.caBundle)
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	w := writer{dir: c.out, signer: signer}
	idx := v1.ImageIndex(empty.Index)
	for _, platform := range slices.Sorted(maps.Keys(c.bins)) {
		arch := strings.TrimPrefix(platform, "linux/")
		bin, err := os.ReadFile(c.bins[platform])
		if err != nil {
			return err
		}
		img, err := ociimage.Image(bin, ca, c.version, arch)
		if err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
		bom, err := sbom(c.bins[platform], c.version, platform)
		if err != nil {
			return fmt.Errorf("%s: %w", platform, err)
		}
		if err := w.signed(fmt.Sprintf("kvgitops-%s.linux-%s.sbom.cdx.json", c.version, arch), bom); err != nil {
			return err
		}
	}
	image := "kvgitops-" + c.version + ".oci.tar"
	if err := ociimage.WriteIndexArchive(idx, c.ref+":"+c.version, filepath.Join(c.out, image)); err != nil {
		return err
	}
	if err := w.sum(image); err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	d, err := name.NewDigest(c.ref + "@" + digest.String())
	if err != nil {
		return err
	}
	p, err := (&payload.Cosign{Image: d, Annotations: map[string]any{"org.opencontainers.image.version": c.version}}).MarshalJSON()
	if err != nil {
		return err
	}
	if err := w.signed("kvgitops-"+c.version+".image.payload.json", p); err != nil {
		return err
	}
	if err := w.file("cosign.pub", pub); err != nil {
		return err
	}
	return w.close()
}

// writer writes a release's files, signing those asked, and sums them all.
type writer struct {
	dir    string
	signer signature.Signer
	sums   bytes.Buffer
}

func (w *writer) file(name string, data []byte) error {
	if err := os.WriteFile(filepath.Join(w.dir, name), data, 0o644); err != nil {
		return err
	}
	return w.sum(name)
}

// sum adds a file written to SHA256SUMS.
func (w *writer) sum(name string) error {
	data, err := os.ReadFile(filepath.Join(w.dir, name))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	fmt.Fprintf(&w.sums, "%s  %s\n", hex.EncodeToString(sum[:]), name)
	return nil
}

// signed writes data and name.sig: the base64 of its ECDSA signature, as
// cosign sign-blob writes it.
func (w *writer) signed(name string, data []byte) error {
	sig, err := w.signer.SignMessage(bytes.NewReader(data))
	if err != nil {
		return err
	}
	if err := w.file(name, data); err != nil {
		return err
	}
	return w.file(name+".sig", []byte(base64.StdEncoding.EncodeToString(sig)))
}

func (w *writer) close() error {
	return os.WriteFile(filepath.Join(w.dir, "SHA256SUMS"), w.sums.Bytes(), 0o644)
}

// loadKey reads an unencrypted PEM ECDSA private key and returns a signer
// and the public key as PEM.
func loadKey(path string) (signature.Signer, []byte, error) {
	if path == "" {
		return nil, nil, errors.New("no -key: a release is signed (make release-key writes a key pair)")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(data, cryptoutils.SkipPassword)
	if err != nil {
		return nil, nil, fmt.Errorf("key %s: %w", path, err)
	}
	ec, ok := priv.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, nil, fmt.Errorf("key %s: want an ECDSA P-256 key", path)
	}
	signer, err := signature.LoadECDSASignerVerifier(ec, crypto.SHA256)
	if err != nil {
		return nil, nil, err
	}
	pub, err := cryptoutils.MarshalPublicKeyToPEM(ec.Public())
	return signer, pub, err
}

// generateKey writes a new P-256 key pair: path (PKCS #8 PEM, mode 0600)
// and path.pub.
func generateKey(path string) error {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	pub, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		return err
	}
	return os.WriteFile(path+".pub", pub, 0o644)
}

// sbom is a CycloneDX SBOM of the binary at path, from its Go build
// information: the main module at version, the Go toolchain, and every
// module linked in (replacements as built).
func sbom(path, version, platform string) ([]byte, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("build information of %s: %w", path, err)
	}
	purl := func(p, v string) string { return "pkg:golang/" + p + "@" + v }
	main := cdx.Component{Type: cdx.ComponentTypeApplication, Name: "kvgitops", Version: version,
		BOMRef: purl(bi.Main.Path, version), PackageURL: purl(bi.Main.Path, version),
		Properties: &[]cdx.Property{{Name: "platform", Value: platform}, {Name: "go", Value: bi.GoVersion}}}
	comps := []cdx.Component{{Type: cdx.ComponentTypeLibrary, Name: "stdlib", Version: bi.GoVersion,
		BOMRef: purl("stdlib", bi.GoVersion), PackageURL: purl("stdlib", bi.GoVersion)}}
	deps := []string{purl("stdlib", bi.GoVersion)}
	for _, m := range bi.Deps {
		if m.Replace != nil {
			m = m.Replace
		}
		c := cdx.Component{Type: cdx.ComponentTypeLibrary, Name: m.Path, Version: m.Version,
			BOMRef: purl(m.Path, m.Version), PackageURL: purl(m.Path, m.Version)}
		if m.Sum != "" {
			c.Properties = &[]cdx.Property{{Name: "go:module-sum", Value: m.Sum}}
		}
		comps = append(comps, c)
		deps = append(deps, c.BOMRef)
	}
	bom := cdx.NewBOM()
	bom.Metadata = &cdx.Metadata{Component: &main}
	bom.Components = &comps
	bom.Dependencies = &[]cdx.Dependency{{Ref: main.BOMRef, Dependencies: &deps}}
	var buf bytes.Buffer
	if err := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON).SetPretty(true).Encode(bom); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
