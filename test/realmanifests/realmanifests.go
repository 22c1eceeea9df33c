package realmanifests

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"

	"github.com/kvgitops/kvgitops/test/root"
)

// EnvDir names the folder; the default is ../shared/real-manifests next to
// the module root.
const EnvDir = "KVGITOPS_REAL_MANIFESTS"

// File is one manifest of the folder.
type File struct {
	Tag    string // from the file name
	Path   string
	Edited bool // a copy with known edits (edited/), not a genuine asset
}

// Dir returns the folder, or an error saying where it was looked for.
func Dir() (string, error) {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		root, err := root.Module()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "..", "shared", "real-manifests")
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("no genuine release manifests at %s (set %s)", dir, EnvDir)
	}
	return filepath.Clean(dir), nil
}

// List returns the trusted files, oldest first, then the edited ones.
func List(dir string) ([]File, error) {
	var out []File
	for _, sub := range []string{"", "edited"} {
		paths, err := filepath.Glob(filepath.Join(dir, sub, "v*.yaml"))
		if err != nil {
			return nil, err
		}
		var files []File
		for _, p := range paths {
			tag := strings.TrimSuffix(filepath.Base(p), ".yaml")
			if _, err := semver.StrictNewVersion(strings.TrimPrefix(tag, "v")); err != nil {
				continue
			}
			files = append(files, File{Tag: tag, Path: p, Edited: sub != ""})
		}
		sort.Slice(files, func(i, j int) bool {
			return semver.MustParse(files[i].Tag).LessThan(semver.MustParse(files[j].Tag))
		})
		out = append(out, files...)
	}
	return out, nil
}

// Genuine maps each tag with a trusted file to its bytes. A missing folder
// gives an empty map.
func Genuine() map[string][]byte {
	out := map[string][]byte{}
	dir, err := Dir()
	if err != nil {
		return out
	}
	files, err := List(dir)
	if err != nil {
		return out
	}
	for _, f := range files {
		if f.Edited {
			continue
		}
		if data, err := os.ReadFile(f.Path); err == nil {
			out[f.Tag] = data
		}
	}
	return out
}

// Require returns the folder's files for a test that needs them. Without
// the folder the test fails under CI=true and is skipped elsewhere, saying
// what it skipped.
func Require(t testing.TB) []File {
	t.Helper()
	dir, err := Dir()
	if err == nil {
		var files []File
		if files, err = List(dir); err == nil && len(files) > 0 {
			return files
		}
		if err == nil {
			err = fmt.Errorf("no manifests in %s", dir)
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v: CI must run the tests on genuine release manifests", err)
	}
	t.Skipf("skipping %s, which needs genuine release manifests: %v", t.Name(), err)
	return nil
}
