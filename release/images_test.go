package release_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/release"
	"github.com/kvgitops/kvgitops/test/realmanifests"
)

// TestImagesOfGenuineReleases: the images each genuine release needs, as
// its virt-operator derives them: by tag from its registry, by digest from
// its SHASUM variables in the v0.2x era, more components in later eras.
func TestImagesOfGenuineReleases(t *testing.T) {
	dir := filepath.Dir(realmanifests.Require(t)[0].Path)
	for _, tc := range []struct {
		tag  string
		want []string // component=ref, in order
	}{
		{"v0.17.0", []string{"virt-operator=index.docker.io/kubevirt/virt-operator:v0.17.0", "virt-api=index.docker.io/kubevirt/virt-api:v0.17.0",
			"virt-controller=index.docker.io/kubevirt/virt-controller:v0.17.0", "virt-handler=index.docker.io/kubevirt/virt-handler:v0.17.0",
			"virt-launcher=index.docker.io/kubevirt/virt-launcher:v0.17.0"}},
		{"v0.27.0", []string{"virt-operator=index.docker.io/kubevirt/virt-operator@sha256:9c5e2ecfe49fab18d902d22f97969de942d501abec340651a218846bc68864d8",
			"virt-api=index.docker.io/kubevirt/virt-api@sha256:", "virt-controller=index.docker.io/kubevirt/virt-controller@sha256:",
			"virt-handler=index.docker.io/kubevirt/virt-handler@sha256:", "virt-launcher=index.docker.io/kubevirt/virt-launcher@sha256:"}},
		{"v1.4.0", []string{"virt-operator=quay.io/kubevirt/virt-operator:v1.4.0", "virt-api=quay.io/kubevirt/virt-api:v1.4.0",
			"virt-controller=quay.io/kubevirt/virt-controller:v1.4.0", "virt-handler=quay.io/kubevirt/virt-handler:v1.4.0",
			"virt-launcher=quay.io/kubevirt/virt-launcher:v1.4.0", "libguestfs-tools=quay.io/kubevirt/libguestfs-tools:v1.4.0",
			"virt-exportproxy=quay.io/kubevirt/virt-exportproxy:v1.4.0", "virt-exportserver=quay.io/kubevirt/virt-exportserver:v1.4.0",
			"pr-helper=quay.io/kubevirt/pr-helper:v1.4.0", "sidecar-shim=quay.io/kubevirt/sidecar-shim:v1.4.0"}},
	} {
		data, err := os.ReadFile(filepath.Join(dir, tc.tag+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := release.Vet(data, tc.tag, release.VetOptions{Namespace: "kubevirt"}).Manifest()
		if err != nil {
			t.Fatal(err)
		}
		images, err := m.Images()
		if err != nil {
			t.Fatal(err)
		}
		if len(images) != len(tc.want) {
			t.Errorf("%s: %d images %v, want %d", tc.tag, len(images), images, len(tc.want))
			continue
		}
		for i, img := range images {
			got := img.Component + "=" + img.Ref
			if !strings.HasPrefix(got, tc.want[i]) || strings.HasSuffix(tc.want[i], "@sha256:") && len(got) != len(tc.want[i])+64 {
				t.Errorf("%s image %d: %s, want %s…", tc.tag, i, got, tc.want[i])
			}
			if img.Optional != (img.Component == "libguestfs-tools") {
				t.Errorf("%s: %s optional %v", tc.tag, img.Component, img.Optional)
			}
		}
	}
}
