package planner_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kvgitops/kvgitops/planner"
)

func TestRealCatalog(t *testing.T) {
	c := realCatalog(t)
	stable := 0
	for _, r := range c.Releases() {
		if !r.Prerelease {
			stable++
		}
	}
	if c.Len() != 256 || stable != 145 || c.Latest() != "v1.9.0" {
		t.Errorf("real catalog: %d releases, %d stable, latest %s; want 256, 145, v1.9.0", c.Len(), stable, c.Latest())
	}
}

func TestCatalogText(t *testing.T) {
	c, err := planner.ParseCatalogText([]byte("# tags\nv1.1.0\n\n  v1.0.0  \nv1.1.0-rc.0\nv1.0.0\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []planner.Release{{Tag: "v1.0.0"}, {Tag: "v1.1.0-rc.0", Prerelease: true}, {Tag: "v1.1.0"}}
	if diff := cmp.Diff(want, c.Releases()); diff != "" {
		t.Errorf("releases (-want +got):\n%s", diff)
	}
	_, err = planner.ParseCatalogText([]byte("v1.0.0\nv1.1\n"))
	if !errors.Is(err, planner.ErrInvalidCatalog) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad line: got %v, want an invalid-catalog error naming line 2", err)
	}
}

func TestCatalogGitHub(t *testing.T) {
	page := `[
	 {"tag_name": "v1.2.0", "draft": false, "prerelease": false, "assets": [{"name": "kubevirt-operator.yaml", "browser_download_url": "https://example/op"}]},
	 {"tag_name": "v1.3.0", "draft": true, "prerelease": false, "assets": [{"name": "kubevirt-operator.yaml"}]},
	 {"tag_name": "v1.2.1", "draft": false, "prerelease": true, "assets": [{"name": "kubevirt-operator.yaml"}]},
	 {"tag_name": "v1.3.0-rc.0", "draft": false, "prerelease": false, "assets": [{"name": "kubevirt-operator.yaml"}]},
	 {"tag_name": "v0.6.4-cnv-1.1", "draft": false, "prerelease": false, "assets": [{"name": "kubevirt-operator.yaml"}]},
	 {"tag_name": "v1.1.0", "draft": false, "prerelease": false, "assets": []},
	 {"tag_name": "v1.2.0", "draft": false, "prerelease": false, "assets": [{"name": "kubevirt-operator.yaml"}], "extra": 1}
	]`
	items, err := planner.ParseGitHubPage([]byte(page))
	if err != nil {
		t.Fatal(err)
	}
	c, skipped, err := planner.CatalogFromGitHub(items)
	if err != nil {
		t.Fatal(err)
	}
	want := []planner.Release{{Tag: "v1.2.0"}, {Tag: "v1.2.1", Prerelease: true}, {Tag: "v1.3.0-rc.0", Prerelease: true}}
	if diff := cmp.Diff(want, c.Releases()); diff != "" || skipped != 3 {
		t.Errorf("skipped %d (want 3); releases (-want +got):\n%s", skipped, diff)
	}
	if _, err := planner.ParseGitHubPage([]byte(`{"message": "rate limited"}`)); !errors.Is(err, planner.ErrInvalidCatalog) {
		t.Errorf("an object instead of a list: got %v, want ErrInvalidCatalog", err)
	}
}

func TestCatalogDigest(t *testing.T) {
	a := catalogOf(t, "v1.0.0", "v1.1.0")
	b := catalogOf(t, "v1.1.0", "v1.0.0", "v1.0.0")
	c := catalogOf(t, "v1.0.0", "v1.1.0", "v1.2.0")
	if a.Digest() != b.Digest() {
		t.Errorf("order and duplicates changed the digest: %s vs %s", a.Digest(), b.Digest())
	}
	if a.Digest() == c.Digest() {
		t.Errorf("a new release kept the digest %s", a.Digest())
	}
}
