package planner_test

import (
	"testing"

	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/test/tags"
)

// realCatalog is the real list of KubeVirt releases.
func realCatalog(tb testing.TB) *planner.Catalog {
	tb.Helper()
	c, err := planner.ParseCatalogText(tags.Text)
	if err != nil {
		tb.Fatalf("parse real catalog: %v", err)
	}
	return c
}

func catalogOf(tb testing.TB, tags ...string) *planner.Catalog {
	tb.Helper()
	rs := make([]planner.Release, len(tags))
	for i, t := range tags {
		rs[i] = planner.Release{Tag: t}
	}
	c, err := planner.NewCatalog(rs)
	if err != nil {
		tb.Fatalf("NewCatalog(%v): %v", tags, err)
	}
	return c
}

func mustDesired(tb testing.TB, spec string) planner.Desired {
	tb.Helper()
	d, err := planner.ParseDesired([]byte("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n" + spec))
	if err != nil {
		tb.Fatalf("ParseDesired(%q): %v", spec, err)
	}
	return d
}

// hopsOf lists the To of every step.
func hopsOf(p planner.Plan) []string {
	out := make([]string, 0, len(p.Steps))
	for _, s := range p.Steps {
		out = append(out, s.To)
	}
	return out
}
