package main_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/release"
	"github.com/kvgitops/kvgitops/test/realmanifests"
	"github.com/kvgitops/kvgitops/test/registry"
	"github.com/kvgitops/kvgitops/test/releases"
)

// TestMirrorAPlannedHop: `kvgitops mirror` for the hop v1.3.1 → v1.4.0
// reads the genuine manifest from a release server (its images in the
// test's source registry), copies v1.4.0's ten images into the site's
// registry, and prints the pins and registry with which `kvgitops release
// check` — the agent's vetting — accepts the rewritten manifest.
func TestMirrorAPlannedHop(t *testing.T) {
	files := realmanifests.Require(t)
	src, site := registry.Start(t)+"/kubevirt", registry.Start(t)+"/site/kubevirt"
	srv := releases.NewServer([]string{"v1.3.1", "v1.4.0"})
	defer srv.Close()
	for _, tag := range []string{"v1.3.1", "v1.4.0"} {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(files[0].Path), tag+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		data = []byte(strings.ReplaceAll(string(data), "quay.io/kubevirt", src))
		srv.Mutate(tag+"/kubevirt-operator.yaml", func([]byte) []byte { return data })
		m, err := release.Vet(data, tag, release.VetOptions{Namespace: "kubevirt", Registries: []string{src}}).Manifest()
		if err != nil {
			t.Fatal(err)
		}
		registry.PushRelease(t, m, nil)
	}
	out := filepath.Join(t.TempDir(), "mirror")
	ca := writeFile(t, "ca.crt", string(srv.CAPEM()))
	r := kvgitops(t, "mirror", "--desired", desired(t, "  version: v1.4.0\n"), "--releases", writeFile(t, "releases.txt", "v1.3.1\nv1.4.0\n"),
		"--installed", "v1.3.1", "--manifest-base-url", srv.DownloadBaseURL(), "--release-ca-file", ca, "--release-allowed-networks", "127.0.0.0/8",
		"--release-image-registry", src, "--to", site, "--out", out)
	if r.code != 0 || !strings.Contains(r.stdout, "Mirrored 10 images of v1.4.0 to "+site) {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	rewritten := filepath.Join(out, "v1.4.0", "kubevirt-operator.yaml")
	data, err := os.ReadFile(rewritten)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	pins := "v1.4.0=" + hex.EncodeToString(sum[:])
	for _, want := range []string{`KVGITOPS_RELEASE_PINS: "` + pins + `"`, `KVGITOPS_RELEASE_IMAGE_REGISTRY: "` + site + `"`, `expression: "['` + site + `']"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %s:\n%s", want, r.stdout)
		}
	}
	check := kvgitops(t, "release", "check", "--tag", "v1.4.0", "--file", rewritten, "--release-image-registry", site, "--release-pins", pins)
	if check.code != 0 {
		t.Errorf("the agent's vetting refuses the mirrored manifest: %s %s", check.stdout, check.stderr)
	}
	if check := kvgitops(t, "release", "check", "--tag", "v1.4.0", "--file", rewritten); check.code != 1 {
		t.Errorf("the mirrored manifest is accepted without the mirror allowed (exit %d)", check.code)
	}
}

func TestMirrorNamesAMissingFlag(t *testing.T) {
	r := kvgitops(t, "mirror", "--desired", desired(t, "  version: v1.4.0\n"), "--releases", catalogFile(t), "--installed", "v1.3.1", "--out", t.TempDir())
	if r.code != 2 || !strings.Contains(r.stderr, "--to is required") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}
