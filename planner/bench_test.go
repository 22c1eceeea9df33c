package planner_test

import (
	"testing"

	"github.com/kvgitops/kvgitops/planner"
)

// BenchmarkCompute plans the longest chain of the real catalog, v0.17.0 to
// v1.9.0 (56 hops).
func BenchmarkCompute(b *testing.B) {
	cat := realCatalog(b)
	d := mustDesired(b, "  version: v1.9.0")
	o := planner.Observed{Installed: "v0.17.0", Mode: planner.ModeLocked, OperatorVersion: "v0.17.0", KubeVirt: true, OperatorPresent: true}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := planner.Compute(d, o, cat); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseDesired(b *testing.B) {
	in := []byte(header + `spec:
  version: "~1.8"
  method: Auto
  approval: Manual
  approvedPlan: "3f9c1a2b"
  hopTimeout: 45m
  maintenanceWindow:
    schedule: "0 2 * * 6"
    duration: 4h
    timeZone: Europe/Berlin
`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := planner.ParseDesired(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCatalogText(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		realCatalog(b)
	}
}
