package mirror_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kvgitops/kvgitops/mirror"
	"github.com/kvgitops/kvgitops/release"
	"github.com/kvgitops/kvgitops/test/realmanifests"
	"github.com/kvgitops/kvgitops/test/registry"
	"github.com/kvgitops/kvgitops/test/releases"
)

// source serves genuine kubevirt-operator.yaml files with quay.io
// replaced by the test's source registry, vetted as the agent vets them.
type source struct {
	dir, registry string
}

func (s source) OperatorManifestData(_ context.Context, tag, ns string) ([]byte, *release.Manifest, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, tag+".yaml"))
	if err != nil {
		return nil, nil, err
	}
	data = []byte(strings.ReplaceAll(string(data), "quay.io/kubevirt", s.registry))
	m, err := release.Vet(data, tag, release.VetOptions{Namespace: ns, Registries: []string{s.registry}}).Manifest()
	return data, m, err
}

func (s source) CRManifestData(_ context.Context, tag, _ string) ([]byte, *release.Manifest, error) {
	return releases.CRManifest(tag), nil, nil
}

// world is a source registry holding every image of v1.3.1 and v1.4.0
// (virt-handler as a multi-platform index, v1.3.1 without the optional
// libguestfs-tools) and an empty mirror registry.
type world struct {
	src     source
	mirror  string
	digests map[string]string // source ref → digest
}

func newWorld(t *testing.T, skip ...string) *world {
	t.Helper()
	files := realmanifests.Require(t)
	w := &world{digests: map[string]string{}}
	w.src = source{dir: filepath.Dir(files[0].Path), registry: registry.Start(t) + "/kubevirt"}
	w.mirror = registry.Start(t) + "/site/kubevirt"
	for _, tag := range []string{"v1.3.1", "v1.4.0"} {
		_, m, err := w.src.OperatorManifestData(t.Context(), tag, "kubevirt")
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(w.digests, registry.PushRelease(t, m, func(img release.Image) bool {
			return img.Component == "libguestfs-tools" && tag == "v1.3.1" || slices.Contains(skip, tag+"/"+img.Component)
		}))
	}
	return w
}

// TestMirrorCopiesEveryImageAndRewritesTheManifests: the hop v1.3.1 →
// v1.4.0 mirrored into the site's registry: every image its operators
// deploy is there with its digest (an index whole), the optional one
// missing at the source is skipped and said so, the rewritten manifests
// name only the mirror and are accepted by the agent's vetting with the
// pins and registry the mirror emits, and their operators derive exactly
// the copied images.
func TestMirrorCopiesEveryImageAndRewritesTheManifests(t *testing.T) {
	w := newWorld(t)
	out := t.TempDir()
	var progress []string
	res, err := mirror.Run(t.Context(), w.src, []string{"v1.3.1", "v1.4.0"}, mirror.Options{To: w.mirror, Out: out, Namespace: "kubevirt",
		Progress: func(c mirror.Copied) { progress = append(progress, c.Target) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Releases) != 2 || len(progress) != 20 {
		t.Fatalf("%d releases, %d images reported: %v", len(res.Releases), len(progress), progress)
	}
	pins := map[string]string{}
	for _, p := range strings.Split(res.ReleasePins, ",") {
		tag, sum, _ := strings.Cut(p, "=")
		pins[tag] = sum
	}
	for _, rel := range res.Releases {
		for _, c := range rel.Images {
			checkCopied(t, w, rel.Tag, c)
		}
		data, err := os.ReadFile(filepath.Join(out, rel.Tag, "kubevirt-operator.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), w.src.registry) {
			t.Errorf("%s: the rewritten manifest still names the source registry", rel.Tag)
		}
		v := release.VetRelease(data, rel.Tag, release.VetOptions{Namespace: "kubevirt", Registries: []string{w.mirror}}, pins)
		m, err := v.Manifest()
		if err != nil || v.Version != rel.Tag {
			t.Fatalf("%s: the agent's vetting with the emitted pins and registry: %v (version %q)", rel.Tag, err, v.Version)
		}
		derived, _ := m.Images()
		for _, img := range derived {
			if !slices.ContainsFunc(rel.Images, func(c mirror.Copied) bool { return c.Target == img.Ref && (c.Skipped == "") == (c.Digest != "") }) {
				t.Errorf("%s: the rewritten operator derives %s, which the mirror did not handle", rel.Tag, img.Ref)
			}
		}
	}
	if res.AdmissionPolicyRegistries != "['"+w.mirror+"']" {
		t.Errorf("admission policy registries %s", res.AdmissionPolicyRegistries)
	}
	var saved mirror.Result
	b, _ := os.ReadFile(filepath.Join(out, "mirror.json"))
	if err := json.Unmarshal(b, &saved); err != nil || saved.ReleasePins != res.ReleasePins {
		t.Errorf("mirror.json: %v %q", err, saved.ReleasePins)
	}
	if tags, _ := os.ReadFile(filepath.Join(out, "releases.txt")); string(tags) != "v1.3.1\nv1.4.0\n" {
		t.Errorf("releases.txt %q", tags)
	}
}

// checkCopied: a copied image is in the mirror with its source's digest;
// only the optional image missing at the source is skipped.
func checkCopied(t *testing.T, w *world, tag string, c mirror.Copied) {
	t.Helper()
	if c.Skipped != "" {
		if c.Component != "libguestfs-tools" || tag != "v1.3.1" || !strings.Contains(c.Skipped, "optional") {
			t.Errorf("%s: %s skipped: %s", tag, c.Component, c.Skipped)
		}
		return
	}
	if !strings.HasPrefix(c.Target, w.mirror+"/"+c.Component+":"+tag) {
		t.Errorf("%s: %s goes to %s", tag, c.Component, c.Target)
	}
	ref, _ := name.ParseReference(c.Target)
	d, err := remote.Head(ref)
	if err != nil || d.Digest.String() != w.digests[c.Source] || c.Digest != w.digests[c.Source] {
		t.Errorf("%s: %s in the mirror: %v, digest %v, reported %s, source %s", tag, c.Target, err, d, c.Digest, w.digests[c.Source])
	}
}

// TestMirrorStopsOnAMissingImage: a required image missing at the source
// fails the release, naming the image, and writes no manifest for it.
func TestMirrorStopsOnAMissingImage(t *testing.T) {
	w := newWorld(t, "v1.4.0/virt-exportserver")
	out := t.TempDir()
	_, err := mirror.Run(t.Context(), w.src, []string{"v1.3.1", "v1.4.0"}, mirror.Options{To: w.mirror, Out: out, Namespace: "kubevirt"})
	if err == nil || !strings.Contains(err.Error(), "v1.4.0") || !strings.Contains(err.Error(), w.src.registry+"/virt-exportserver:v1.4.0") {
		t.Fatalf("want an error naming v1.4.0's virt-exportserver, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "v1.4.0", "kubevirt-operator.yaml")); !os.IsNotExist(err) {
		t.Errorf("a manifest was written for the release whose image is missing: %v", err)
	}
}

// TestMirrorIntoAnOCILayout: the images go into a layout, each annotated
// with the reference it will have in the mirror; the manifests name the
// mirror.
func TestMirrorIntoAnOCILayout(t *testing.T) {
	w := newWorld(t)
	dir, out := t.TempDir(), t.TempDir()
	res, err := mirror.Run(t.Context(), w.src, []string{"v1.4.0"}, mirror.Options{To: "registry.example.com/kubevirt", OCILayout: dir, Out: out, Namespace: "kubevirt"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := p.ImageIndex()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, d := range m.Manifests {
		refs = append(refs, d.Annotations["org.opencontainers.image.ref.name"])
	}
	slices.Sort(refs)
	var want []string
	for _, c := range res.Releases[0].Images {
		want = append(want, c.Target)
	}
	slices.Sort(want)
	if !slices.Equal(refs, want) || len(want) != 10 {
		t.Errorf("layout holds %v, want %v", refs, want)
	}
	data, _ := os.ReadFile(filepath.Join(out, "v1.4.0", "kubevirt-operator.yaml"))
	if !strings.Contains(string(data), "registry.example.com/kubevirt/virt-operator:v1.4.0") {
		t.Error("the manifest does not name the mirror's virt-operator")
	}
}

// TestMirrorRefusesPlainHTTPToAPrivateRegistry: go-containerregistry
// falls back to plain HTTP for a registry on a private address; the
// mirror refuses it, naming the flag that allows it, before any
// connection, unless that registry is listed as insecure. Nothing is
// sent to the private address: the transport under the guard records.
func TestMirrorRefusesPlainHTTPToAPrivateRegistry(t *testing.T) {
	w := newWorld(t)
	var asked []string
	record := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Hostname() == "127.0.0.1" { // the test's source registry
			return http.DefaultTransport.RoundTrip(r)
		}
		asked = append(asked, r.URL.Scheme+"://"+r.URL.Host)
		return nil, errors.New("not sent: the test's transport")
	})
	_, err := mirror.Run(t.Context(), w.src, []string{"v1.4.0"}, mirror.Options{To: "10.1.2.3:5000/kubevirt", Out: t.TempDir(), Namespace: "kubevirt", Transport: record})
	if err == nil || !strings.Contains(err.Error(), "refusing plain HTTP to registry 10.1.2.3:5000 (pass --insecure-registry 10.1.2.3:5000") {
		t.Fatalf("plain HTTP to a private registry: %v", err)
	}
	if slices.Contains(asked, "http://10.1.2.3:5000") {
		t.Errorf("a plain HTTP request reached the transport: %v", asked)
	}
	asked = nil
	_, err = mirror.Run(t.Context(), w.src, []string{"v1.4.0"}, mirror.Options{To: "10.1.2.3:5000/kubevirt", Out: t.TempDir(), Namespace: "kubevirt", Transport: record,
		InsecureRegistries: []string{"10.1.2.3:5000"}})
	if err == nil || !slices.Contains(asked, "http://10.1.2.3:5000") {
		t.Errorf("listed as insecure, plain HTTP was not tried: %v (asked %v)", err, asked)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
