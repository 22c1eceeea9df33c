package planner

// Test-only API: the catalog as a list, for the catalog and fuzz tests.

// Releases lists the catalog in ascending order.
func (c *Catalog) Releases() []Release {
	out := make([]Release, len(c.releases))
	for i, r := range c.releases {
		out[i] = Release{Tag: r.v.tag, Prerelease: r.prerelease}
	}
	return out
}
