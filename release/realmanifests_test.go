package release_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/release"
	"github.com/kvgitops/kvgitops/test/realmanifests"
)

// mirrors are the registries the known edits of edited/ switch to: such a
// copy passes only with its registry configured as a mirror.
var mirrors = map[string]string{"v0.52.0": "slpcat"}

// TestGenuineManifestsAreAccepted is the conformance test: every genuine
// kubevirt-operator.yaml (and every realistic edited copy) is accepted, with
// the version its Deployment runs and the sha256 to pin.
func TestGenuineManifestsAreAccepted(t *testing.T) {
	files := realmanifests.Require(t)
	sums := readSums(t, filepath.Dir(files[0].Path))
	for _, f := range files {
		name := f.Tag
		if f.Edited {
			name = "edited/" + f.Tag
		}
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f.Path)
			if err != nil {
				t.Fatal(err)
			}
			opts := release.VetOptions{Namespace: "kubevirt"}
			if m, ok := mirrors[f.Tag]; ok && f.Edited {
				if v := release.Vet(data, f.Tag, opts); v.Accepted() {
					t.Errorf("the copy with its registry swapped to %s was accepted without a mirror", m)
				}
				opts.Registries = []string{m}
			}
			v := release.Vet(data, f.Tag, opts)
			if !v.Accepted() {
				t.Fatalf("refused: %v", v.Err())
			}
			if v.Version != f.Tag {
				t.Errorf("version %q, want %q", v.Version, f.Tag)
			}
			if want, ok := sums[filepath.Base(f.Path)]; !f.Edited && (!ok || v.SHA256 != want) {
				t.Errorf("sha256 %s, SHA256SUMS says %q", v.SHA256, want)
			}
			if len(v.Objects) < 7 {
				t.Errorf("%d objects, want the whole release", len(v.Objects))
			}
		})
	}
}

func readSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 {
			out[filepath.Base(f[1])] = f[0]
		}
	}
	return out
}

// TestAMirrorMatchesHoweverItIsSpelt: Docker Hub's implicit host: the
// edited copy's "slpcat/virt-operator" is the image a mirror configured as
// slpcat, docker.io/slpcat or index.docker.io/slpcat names; another
// namespace is not.
func TestAMirrorMatchesHoweverItIsSpelt(t *testing.T) {
	files := realmanifests.Require(t)
	var path string
	for _, f := range files {
		if f.Edited && f.Tag == "v0.52.0" {
			path = f.Path
		}
	}
	if path == "" {
		t.Fatal("edited/v0.52.0.yaml is missing")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for mirror, want := range map[string]bool{"slpcat": true, "docker.io/slpcat": true, "index.docker.io/slpcat": true, "docker.io/slpcat/": true,
		"docker.io/other": false, "quay.io/slpcat": false, "slpcat.example.com": false} {
		v := release.Vet(data, "v0.52.0", release.VetOptions{Namespace: "kubevirt", Registries: []string{mirror}})
		if v.Accepted() != want {
			t.Errorf("mirror %q: accepted %t, want %t (%v)", mirror, v.Accepted(), want, v.Err())
		}
	}
}

// BenchmarkVetGenuine vets every genuine kubevirt-operator.yaml once per
// iteration (the work `release check` and every hop do before applying).
func BenchmarkVetGenuine(b *testing.B) {
	files := realmanifests.Require(b)
	var data [][]byte
	var tags []string
	for _, f := range files {
		if f.Edited {
			continue
		}
		d, err := os.ReadFile(f.Path)
		if err != nil {
			b.Fatal(err)
		}
		data, tags = append(data, d), append(tags, f.Tag)
	}
	b.ReportAllocs()
	for b.Loop() {
		for i, d := range data {
			if v := release.Vet(d, tags[i], release.VetOptions{Namespace: "kubevirt"}); !v.Accepted() {
				b.Fatal(v.Err())
			}
		}
	}
	b.ReportMetric(float64(len(data)), "files/op")
}
