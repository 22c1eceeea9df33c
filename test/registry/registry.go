package registry

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kvgitops/kvgitops/release"
)

// Start runs a registry on loopback until the test ends and returns its
// host:port.
func Start(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// PushRelease pushes a random image for each image of m that skip does
// not exclude (virt-handler as an index of three platforms) and returns
// each reference's digest.
func PushRelease(t testing.TB, m *release.Manifest, skip func(release.Image) bool) map[string]string {
	t.Helper()
	images, err := m.Images()
	if err != nil {
		t.Fatal(err)
	}
	digests := map[string]string{}
	for _, img := range images {
		if skip != nil && skip(img) {
			continue
		}
		ref, err := name.ParseReference(img.Ref)
		if err != nil {
			t.Fatal(err)
		}
		d, err := pushRandom(ref, img.Component == "virt-handler")
		if err != nil {
			t.Fatal(err)
		}
		digests[img.Ref] = d
	}
	return digests
}

// pushRandom pushes a random image, or a random index of three platforms,
// to ref and returns its digest.
func pushRandom(ref name.Reference, index bool) (string, error) {
	var d v1.Hash
	if index {
		idx, err := random.Index(512, 1, 3)
		if err == nil {
			err = remote.WriteIndex(ref, idx)
		}
		if err != nil {
			return "", err
		}
		d, err = idx.Digest()
		return d.String(), err
	}
	image, err := random.Image(512, 1)
	if err == nil {
		err = remote.Write(ref, image)
	}
	if err != nil {
		return "", err
	}
	d, err = image.Digest()
	return d.String(), err
}
