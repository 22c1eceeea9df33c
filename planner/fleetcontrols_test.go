package planner_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/planner"
)

const controlled = fleetHead + `  kubevirt: {version: v1.8.4}
  rings:
  - name: canary
    clusters: [lab-1, lab-2]
    maxFailures: 1
  - name: prod
    clusters: [p1, p2, p3, p4, p5]
    maxParallel: 2
    promotion: Manual
`

// TestRingControlsAreStrict: each control names its field and value when
// it is wrong.
func TestRingControlsAreStrict(t *testing.T) {
	ring := func(controls string) string {
		return fleetHead + "  kubevirt: {version: v1.8.4}\n  rings:\n  - name: prod\n    clusters: [p1, p2]\n" + controls
	}
	for _, tc := range []struct{ name, file, want string }{
		{"maxParallel zero", ring("    maxParallel: 0\n"), `spec.rings[0].maxParallel (line 8): must be a count from 1 to 2000 or a share such as 25%, got "0"`},
		{"maxParallel over 100%", ring("    maxParallel: 150%\n"), `spec.rings[0].maxParallel (line 8): a share must be 1% to 100%, got "150%"`},
		{"maxParallel words", ring("    maxParallel: a few\n"), `got "a few"`},
		{"promotion", ring("    promotion: Sometimes\n"), `spec.rings[0].promotion (line 8)`},
		{"maxFailures", ring("    maxFailures: -1\n"), `spec.rings[0].maxFailures (line 8): must be a count from 0 to 2000, got "-1"`},
		{"paused", ring("  paused: maybe\n"), `spec.paused (line 8)`},
		{"promotion of an automatic ring", ring("  promotions: {prod: v1.8.4}\n"), `spec.promotions (line 8): names a ring whose promotion is Automatic: only meaningful with promotion: Manual, got "prod"`},
		{"promotion of no ring", ring("    promotion: Manual\n  promotions: {mars: v1.8.4}\n"), `spec.promotions (line 9): names no ring, got "mars"`},
		{"promotion to no tag", ring("    promotion: Manual\n  promotions: {prod: latest}\n"), `spec.promotions.prod (line 9): not a release tag such as v1.8.4`},
	} {
		_, err := planner.ParseFleet([]byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	f := mustFleet(t, ring("    maxParallel: 25%\n    promotion: Manual\n    maxFailures: 1\n  paused: true\n  promotions: {prod: v1.8.4}\n"))
	r := f.Rings[0]
	if r.MaxParallelPercent != 25 || r.Promotion != planner.PromotionManual || r.MaxFailures != 1 || !f.Paused || f.Promotions["prod"] != "v1.8.4" ||
		r.Controls() != "maxParallel 25%, promotion Manual, maxFailures 1" {
		t.Errorf("parsed %+v, paused %v, promotions %v, controls %q", r, f.Paused, f.Promotions, r.Controls())
	}
}

// TestRingControlsInTheGate: pause, manual promotion, maxParallel and a
// ring's failure budget, each in the gate's verdict and message.
func TestRingControlsInTheGate(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	done := planner.Peer{Found: true, Phase: "Succeeded", Version: "v1.8.4", Current: true, ReadySince: now.Add(-time.Hour)}
	moving := planner.Peer{Found: true, Phase: "Progressing", Version: "v1.7.4", Current: true}
	failed := planner.Peer{Found: true, Phase: "Failed", Reason: "HopTimeout", Message: "virt-handler", Version: "v1.7.4", Current: true}
	canaryDone := map[string]planner.Peer{"lab-1": done, "lab-2": done}
	with := func(extra map[string]planner.Peer) map[string]planner.Peer {
		out := map[string]planner.Peer{}
		for k, v := range canaryDone {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	promoted := controlled + "  promotions: {prod: v1.8.4}\n"
	for _, tc := range []struct {
		name, file, cluster string
		peers               map[string]planner.Peer
		open                bool
		reason              planner.Reason
		msg                 string
	}{
		{"paused, even the first ring", controlled + "  paused: true\n", "lab-1", nil, false, planner.ReasonRolloutPaused, "the rollout is paused (spec.paused: true in the fleet file)"},
		{"the first ring, not paused", controlled, "lab-1", nil, true, "", ""},
		{"a manual ring not promoted", controlled, "p1", canaryDone, false, planner.ReasonWaitingForPromotion, "ring prod starts on a manual promotion: set spec.promotions.prod: v1.8.4 in the fleet file"},
		{"promoted to another version", controlled + "  promotions: {prod: v1.8.3}\n", "p1", canaryDone, false, planner.ReasonWaitingForPromotion, "(it is promoted to v1.8.3)"},
		{"promoted, but the canary not done", promoted, "p1", map[string]planner.Peer{"lab-1": done, "lab-2": moving}, false, planner.ReasonWaitingForRing, "waiting for ring canary: lab-2 is Progressing"},
		{"promoted: the first of maxParallel 2", promoted, "p1", canaryDone, true, "", ""},
		{"the second of maxParallel 2", promoted, "p2", with(map[string]planner.Peer{"p1": moving}), true, "", ""},
		{"the third waits for a place", promoted, "p3", with(map[string]planner.Peer{"p1": moving, "p2": moving}), false, planner.ReasonWaitingForRing,
			"ring prod moves 2 of its clusters at a time (maxParallel 2, promotion Manual): p1, p2 before p3 not done yet"},
		{"the third moves when the first is done", promoted, "p3", with(map[string]planner.Peer{"p1": done, "p2": moving}), true, "", ""},
		{"one canary failed, within its budget", promoted, "p1", map[string]planner.Peer{"lab-1": failed, "lab-2": done}, true, "", ""},
		{"both canaries failed, over the budget", promoted, "p1", map[string]planner.Peer{"lab-1": failed, "lab-2": failed}, false, planner.ReasonRolloutHalted,
			"(2 failed, over ring canary's maxFailures 1)"},
	} {
		f := mustFleet(t, tc.file)
		g := f.Gate(tc.cluster, "v1.8.4", tc.peers, now)
		if g.Open != tc.open || g.Reason != tc.reason || !strings.Contains(g.Message, tc.msg) {
			t.Errorf("%s: open %v %s %q; want open %v %s %q", tc.name, g.Open, g.Reason, g.Message, tc.open, tc.reason, tc.msg)
		}
	}
}

// TestMaxParallelAsAShare: 40% of five clusters is two at a time; the
// clusters it gates on are those before it in its ring.
func TestMaxParallelAsAShare(t *testing.T) {
	f := mustFleet(t, strings.Replace(controlled, "maxParallel: 2", "maxParallel: 40%", 1))
	if n := f.Rings[1].Parallel(5); n != 2 {
		t.Errorf("40%% of 5: %d", n)
	}
	if got := strings.Join(f.EarlierClusters("p3"), ","); got != "lab-1,lab-2,p1,p2" {
		t.Errorf("p3 is gated on %s", got)
	}
}
