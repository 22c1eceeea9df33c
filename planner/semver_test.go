package planner_test

import (
	"testing"

	"github.com/Masterminds/semver/v3"
)

func mustLine(t *testing.T, tag string) [2]uint64 {
	t.Helper()
	v, err := semver.NewVersion(tag)
	if err != nil {
		t.Fatalf("tag %q: %v", tag, err)
	}
	return [2]uint64{v.Major(), v.Minor()}
}

func cmpTags(a, b string) int {
	return semver.MustParse(a).Compare(semver.MustParse(b))
}
