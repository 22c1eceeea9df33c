package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/kvgitops/kvgitops/release"
)

// Source is where releases come from (release.Client).
type Source interface {
	OperatorManifestData(ctx context.Context, tag, namespace string) ([]byte, *release.Manifest, error)
	CRManifestData(ctx context.Context, tag, namespace string) ([]byte, *release.Manifest, error)
}

// Options say where the mirror goes.
type Options struct {
	// To is the mirror's repository prefix (registry.example.com/kubevirt):
	// each image goes to To/<its name>, keeping its tag or digest.
	To string
	// OCILayout, when set, receives the images instead of To (push the
	// layout to To later, e.g. with crane or skopeo); the manifests name To.
	OCILayout string
	// Out receives <tag>/kubevirt-operator.yaml (rewritten),
	// <tag>/kubevirt-cr.yaml, releases.txt and mirror.json.
	Out string
	// Namespace is KubeVirt's (the vetting's).
	Namespace string
	// Progress, when set, is told of each image copied.
	Progress func(Copied)
	// InsecureRegistries (host[:port]) may be reached over plain HTTP;
	// others only over HTTPS (loopback aside), though go-containerregistry
	// would fall back to HTTP for private addresses.
	InsecureRegistries []string
	// Transport is the HTTP transport under that guard (default
	// remote.DefaultTransport).
	Transport http.RoundTripper
}

// Result is what mirror.json holds.
type Result struct {
	Registry string    `json:"registry"`
	Releases []Release `json:"releases"`
	// ReleasePins is --release-pins (KVGITOPS_RELEASE_PINS) for the
	// rewritten manifests.
	ReleasePins string `json:"releasePins"`
	// AdmissionPolicyRegistries is the value of `registries` in
	// deploy/admission-policy.yaml.
	AdmissionPolicyRegistries string `json:"admissionPolicyRegistries"`
}

// Release is one release mirrored.
type Release struct {
	Tag string `json:"tag"`
	// SHA256 is the rewritten kubevirt-operator.yaml's.
	SHA256 string   `json:"sha256"`
	Images []Copied `json:"images"`
}

// Copied is one image.
type Copied struct {
	Component string `json:"component"`
	Source    string `json:"source"`
	Target    string `json:"target"`
	Digest    string `json:"digest,omitempty"`
	// Skipped says why an optional image was not copied.
	Skipped string `json:"skipped,omitempty"`
}

// Run mirrors the releases tags.
func Run(ctx context.Context, src Source, tags []string, o Options) (*Result, error) {
	to := strings.TrimSuffix(o.To, "/")
	if _, err := name.NewRepository(to + "/virt-operator"); err != nil {
		return nil, fmt.Errorf("--to %q is not a repository prefix: %w", o.To, err)
	}
	base := o.Transport
	if base == nil {
		base = remote.DefaultTransport
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(httpGuard{base: base, insecure: o.InsecureRegistries})}
	var dst destination = registryDestination{opts: opts}
	if o.OCILayout != "" {
		l, err := openLayout(o.OCILayout, opts)
		if err != nil {
			return nil, err
		}
		dst = l
	}
	res := &Result{Registry: to, AdmissionPolicyRegistries: "['" + to + "']"}
	var pins []string
	for _, tag := range tags {
		r, err := mirrorRelease(ctx, src, tag, to, dst, o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tag, err)
		}
		res.Releases = append(res.Releases, *r)
		pins = append(pins, tag+"="+r.SHA256)
	}
	res.ReleasePins = strings.Join(pins, ",")
	if err := os.WriteFile(filepath.Join(o.Out, "releases.txt"), []byte(strings.Join(tags, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, err
	}
	return res, os.WriteFile(filepath.Join(o.Out, "mirror.json"), append(b, '\n'), 0o644)
}

// mirrorRelease copies one release's images and writes its rewritten
// manifests.
func mirrorRelease(ctx context.Context, src Source, tag, to string, dst destination, o Options) (*Release, error) {
	data, m, err := src.OperatorManifestData(ctx, tag, o.Namespace)
	if err != nil {
		return nil, err
	}
	cr, _, err := src.CRManifestData(ctx, tag, o.Namespace)
	if err != nil {
		return nil, err
	}
	images, err := m.Images()
	if err != nil {
		return nil, err
	}
	r := &Release{Tag: tag}
	rewritten := string(data)
	for _, img := range images {
		c, err := copyImage(dst, img, to)
		if err != nil {
			return nil, err
		}
		if o.Progress != nil {
			o.Progress(c)
		}
		r.Images = append(r.Images, c)
		rewritten = strings.ReplaceAll(rewritten, img.Ref, c.Target)
	}
	v := release.VetRelease([]byte(rewritten), tag, release.VetOptions{Namespace: o.Namespace, Registries: []string{to}}, nil)
	if err := v.Err(); err != nil {
		return nil, fmt.Errorf("the rewritten kubevirt-operator.yaml would be refused: %w", err)
	}
	if v.Version != tag {
		return nil, fmt.Errorf("the rewritten kubevirt-operator.yaml runs %q, not %s", v.Version, tag)
	}
	sum := sha256.Sum256([]byte(rewritten))
	r.SHA256 = hex.EncodeToString(sum[:])
	dir := filepath.Join(o.Out, tag)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "kubevirt-operator.yaml"), []byte(rewritten), 0o644); err != nil {
		return nil, err
	}
	return r, os.WriteFile(filepath.Join(dir, "kubevirt-cr.yaml"), cr, 0o644)
}

// target is where img goes: To/<its last path element>, same tag or
// digest.
func target(img release.Image, to string) string {
	ref := release.ParseImage(img.Ref)
	base := ref.Repository[strings.LastIndex(ref.Repository, "/")+1:]
	if ref.Digest != "" {
		return to + "/" + base + "@" + ref.Digest
	}
	return to + "/" + base + ":" + ref.Tag
}

// copyImage copies one image (an index whole) to dst.
func copyImage(dst destination, img release.Image, to string) (Copied, error) {
	c := Copied{Component: img.Component, Source: img.Ref, Target: target(img, to)}
	src, err := name.ParseReference(img.Ref)
	if err != nil {
		return c, fmt.Errorf("image %q: %w", img.Ref, err)
	}
	dref, err := name.ParseReference(c.Target)
	if err != nil {
		return c, fmt.Errorf("target %q: %w", c.Target, err)
	}
	desc, err := remote.Get(src, dst.options()...)
	var terr *transport.Error
	if img.Optional && errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		c.Skipped = "not at the source; optional (" + img.Component + ")"
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read %s: %w", img.Ref, err)
	}
	c.Digest = desc.Digest.String()
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err == nil {
			err = dst.writeIndex(dref, idx)
		}
		return c, wrapWrite(c, err)
	}
	image, err := desc.Image()
	if err == nil {
		err = dst.writeImage(dref, image)
	}
	return c, wrapWrite(c, err)
}

func wrapWrite(c Copied, err error) error {
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", c.Source, c.Target, err)
	}
	return nil
}

// destination is a registry or an OCI layout.
type destination interface {
	options() []remote.Option
	writeImage(ref name.Reference, img v1.Image) error
	writeIndex(ref name.Reference, idx v1.ImageIndex) error
}

type registryDestination struct{ opts []remote.Option }

func (r registryDestination) options() []remote.Option { return r.opts }
func (r registryDestination) writeImage(ref name.Reference, img v1.Image) error {
	return remote.Write(ref, img, r.options()...)
}
func (r registryDestination) writeIndex(ref name.Reference, idx v1.ImageIndex) error {
	return remote.WriteIndex(ref, idx, r.options()...)
}

// layoutDestination appends to an OCI layout, each image annotated with
// its target reference (org.opencontainers.image.ref.name).
type layoutDestination struct {
	path layout.Path
	opts []remote.Option
}

func openLayout(dir string, opts []remote.Option) (*layoutDestination, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return nil, fmt.Errorf("--oci-layout %s: %w", dir, err)
		}
	}
	return &layoutDestination{path: p, opts: opts}, nil
}

func (l *layoutDestination) options() []remote.Option { return l.opts }
func (l *layoutDestination) writeImage(ref name.Reference, img v1.Image) error {
	return l.path.AppendImage(img, layout.WithAnnotations(refName(ref)))
}
func (l *layoutDestination) writeIndex(ref name.Reference, idx v1.ImageIndex) error {
	return l.path.AppendIndex(idx, layout.WithAnnotations(refName(ref)))
}

func refName(ref name.Reference) map[string]string {
	return map[string]string{"org.opencontainers.image.ref.name": ref.String()}
}

// httpGuard refuses plain HTTP to a registry that is neither on loopback
// nor listed as insecure: go-containerregistry falls back to HTTP for
// private addresses when HTTPS fails, which would carry images, and
// credentials, in the clear.
type httpGuard struct {
	base     http.RoundTripper
	insecure []string
}

func (g httpGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	host := r.URL.Hostname()
	ip := net.ParseIP(host)
	if r.URL.Scheme == "http" && host != "localhost" && (ip == nil || !ip.IsLoopback()) && !slices.Contains(g.insecure, r.URL.Host) {
		return nil, fmt.Errorf("refusing plain HTTP to registry %s (pass --insecure-registry %s if it serves no TLS)", r.URL.Host, r.URL.Host)
	}
	return g.base.RoundTrip(r)
}
