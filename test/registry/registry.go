package registry

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
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
		if img.Component == "virt-handler" {
			idx, err := random.Index(512, 1, 3)
			if err == nil {
				err = remote.WriteIndex(ref, idx)
			}
			if err != nil {
				t.Fatal(err)
			}
			d, _ := idx.Digest()
			digests[img.Ref] = d.String()
			continue
		}
		image, err := random.Image(512, 1)
		if err == nil {
			err = remote.Write(ref, image)
		}
		if err != nil {
			t.Fatal(err)
		}
		d, _ := image.Digest()
		digests[img.Ref] = d.String()
	}
	return digests
}
