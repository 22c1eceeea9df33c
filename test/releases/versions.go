package releases

import (
	"sync"

	"github.com/Masterminds/semver/v3"

	"github.com/kvgitops/kvgitops/test/realmanifests"
)

// AtLeast reports whether tag is at or above min by semver precedence
// (pre-releases of min sort below it).
func AtLeast(tag, min string) bool {
	v, err := semver.NewVersion(tag)
	if err != nil {
		return false
	}
	return v.Compare(semver.MustParse(min)) >= 0
}

// Registry is where a release's images live: Docker Hub through v0.36.x,
// quay.io from v0.37.0-rc.0 (docs/kubevirt.md, "How the operator reads its version").
func Registry(tag string) string {
	if AtLeast(tag, "v0.37.0-rc.0") {
		return "quay.io/kubevirt"
	}
	return "index.docker.io/kubevirt"
}

// ImageDigest is the fake, stable digest of a release's operator image.
func ImageDigest(tag string) string { return fakeDigest("virt-operator", tag) }

// genuine are the genuine assets beside the project, read once.
var genuine = sync.OnceValue(realmanifests.Genuine)
