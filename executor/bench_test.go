package executor_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/simulator"
)

// BenchmarkTenHopPlan runs the 10-hop Strict plan v0.45.0 -> v0.54.0 (CRDs as apiextensions v1, which the test apiserver serves) against
// the simulator with a fixed 2 s per hop (1 s operator rollout + 1 s
// component rollout). It reports wall time over the simulator's own hop
// time (goal <= 1.05) and the latency from the simulator completing a hop to
// the executor starting the next step (goal <= 100 ms, watch-driven).
func BenchmarkTenHopPlan(b *testing.B) {
	cat, err := planner.ParseCatalogText(releases.Text)
	if err != nil {
		b.Fatal(err)
	}
	d, err := planner.ParseDesired([]byte("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n  version: v0.54.0\n"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		h := start(b, harnessOptions{rollout: time.Second, strategy: time.Millisecond})
		h.install(b, "v0.45.0", planner.MethodOperator)
		plan, err := planner.Compute(d, h.observe(b).Observed, cat)
		if err != nil || len(plan.Steps) != 10 {
			b.Fatalf("plan: %v, %d steps", err, len(plan.Steps))
		}
		b.StartTimer()
		begin := time.Now()
		var starts []time.Time
		for _, s := range plan.Steps {
			starts = append(starts, time.Now())
			if _, err := h.exec.Run(context.Background(), s, executor.StepOptions{Deadline: time.Now().Add(time.Minute)}); err != nil {
				b.Fatalf("%s: %v", s, err)
			}
		}
		wall := time.Since(begin)
		b.StopTimer()

		// The simulator's own time per hop: from the operator rollout it
		// saw start to the hop it completed.
		var simTime time.Duration
		var completed []time.Time
		var rolloutStart time.Time
		for _, tr := range h.sim.Transitions() {
			switch {
			case tr.Kind == simulator.OperatorRolloutStarted && tr.To != "v0.20.1":
				rolloutStart = tr.At
			case tr.Kind == simulator.HopCompleted && tr.From != "":
				simTime += tr.At.Sub(rolloutStart)
				completed = append(completed, tr.At)
			}
		}
		if len(completed) != 10 {
			b.Fatalf("simulator completed %d hops", len(completed))
		}
		var lat []time.Duration
		for i := 0; i+1 < len(starts); i++ {
			lat = append(lat, starts[i+1].Sub(completed[i]))
		}
		slices.Sort(lat)
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(wall.Seconds()/(10*2.0), "wall/(10x2s)")
		b.ReportMetric(wall.Seconds()/simTime.Seconds(), "wall/sim-time")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "next-step-p50-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "next-step-max-ms")
		b.StartTimer()
	}
}
