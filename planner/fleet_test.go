package planner_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
)

const fleetHead = "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtFleet\nspec:\n"

const goodFleet = fleetHead + `  kubevirt:
    version: v1.8.4
    hopTimeout: 10m
  rings:
  - name: canary
    clusters: [lab-1]
    soak: 1h
  - name: staging
    clusters: [eu-2, us-3]
    soak: 24h
  - name: prod
    clusters: [ap-1, ap-2]
  halt:
    statusMissingAfter: 2h
  overrides:
    us-3: {version: v1.7.4}
    ap-2: {suspend: true}
`

func mustFleet(t *testing.T, s string) planner.Fleet {
	t.Helper()
	f, err := planner.ParseFleet([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestParseFleetReadsRingsOverridesAndTheSharedSpec(t *testing.T) {
	f := mustFleet(t, goodFleet)
	if len(f.Rings) != 3 || f.Rings[1].Name != "staging" || f.Rings[1].Soak != 24*time.Hour || len(f.Rings[1].Clusters) != 2 {
		t.Fatalf("rings %+v", f.Rings)
	}
	if f.StatusMissingAfter != 2*time.Hour {
		t.Errorf("statusMissingAfter %s", f.StatusMissingAfter)
	}
	d, m, err := f.DesiredFor("eu-2")
	if err != nil || d.Version != "v1.8.4" || d.HopTimeout != 10*time.Minute || m.Ring != 1 || m.Override != nil {
		t.Errorf("eu-2: %+v %+v %v", d, m, err)
	}
	d, m, err = f.DesiredFor("us-3")
	if err != nil || d.Version != "v1.7.4" || m.Override == nil {
		t.Errorf("us-3 is pinned: %+v %+v %v", d, m, err)
	}
	if d, _, _ := f.DesiredFor("ap-2"); !d.Suspend {
		t.Error("ap-2 is suspended")
	}
	keyed := mustFleet(t, goodFleet+"  statusKeys:\n    lab-1: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHs4 lab-1@fleet\n    eu-2: |\n      -----BEGIN PGP PUBLIC KEY BLOCK-----\n      mQENBF\n      -----END PGP PUBLIC KEY BLOCK-----\n")
	if !strings.HasPrefix(keyed.StatusKeys["lab-1"], "ssh-ed25519 ") || !strings.Contains(keyed.StatusKeys["eu-2"], "END PGP PUBLIC KEY BLOCK") || len(keyed.StatusKeys) != 2 {
		t.Errorf("statusKeys %q", keyed.StatusKeys)
	}
	_, _, err = f.DesiredFor("mars-1")
	if fault.ReasonOf(err) != planner.ReasonNotInFleet || !strings.Contains(err.Error(), `"mars-1"`) || !strings.Contains(err.Error(), "canary, staging, prod") {
		t.Errorf("a cluster in no ring: %v", err)
	}
}

func TestParseFleetNamesTheFieldAndValue(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"a desired field", "  kubevirt: {version: 1.8}\n  rings: [{name: a, clusters: [x]}]\n", "spec.kubevirt.version (line 4): must be a string (quote it), got float"},
		{"no rings", "  kubevirt: {version: v1.8.4}\n  rings: []\n", "spec.rings (line 5): must be a non-empty list"},
		{"a cluster in two rings", "  kubevirt: {version: v1.8.4}\n  rings:\n  - {name: a, clusters: [x]}\n  - {name: b, clusters: [y, x]}\n", `spec.rings[1].clusters[1] (line 7): is already in ring a: a cluster is in one ring, got "x"`},
		{"two rings of one name", "  kubevirt: {version: v1.8.4}\n  rings:\n  - {name: a, clusters: [x]}\n  - {name: a, clusters: [y]}\n", `spec.rings[1].name (line 7): names another ring too, got "a"`},
		{"a bad soak", "  kubevirt: {version: v1.8.4}\n  rings: [{name: a, clusters: [x], soak: forever}]\n", `spec.rings[0].soak (line 5): not a duration`},
		{"a bad cluster name", "  kubevirt: {version: v1.8.4}\n  rings: [{name: a, clusters: [Eu_2]}]\n", `spec.rings[0].clusters[0] (line 5): not a name`},
		{"an override of a stranger", "  kubevirt: {version: v1.8.4}\n  rings: [{name: a, clusters: [x]}]\n  overrides: {y: {suspend: true}}\n", `spec.overrides (line 6): names a cluster that is in no ring, got "y"`},
		{"an empty override", "  kubevirt: {version: v1.8.4}\n  rings: [{name: a, clusters: [x]}]\n  overrides: {x: {}}\n", `spec.overrides.x (line 6): sets nothing`},
		{"a bad pin", "  kubevirt: {version: v1.8.4}\n  rings: [{name: a, clusters: [x]}]\n  overrides: {x: {version: v1.8}}\n", `spec.overrides.x.version (line 6): not a release tag`},
		{"an unknown field", "  kubevirt: {version: v1.8.4}\n  rings: [{name: a, clusters: [x], wave: 2}]\n", `spec.rings[0].wave (line 5): is not a known field`},
		{"no kubevirt", "  rings: [{name: a, clusters: [x]}]\n", `spec.kubevirt (line 4): is required`},
		{"a key of a stranger", "  kubevirt: {version: v1.8.4}\n  rings: [{name: a, clusters: [x]}]\n  statusKeys: {y: ssh-ed25519 AAAA}\n", `spec.statusKeys (line 6): names a cluster that is in no ring, got "y"`},
		{"a key that is no key", "  kubevirt: {version: v1.8.4}\n  rings: [{name: a, clusters: [x]}]\n  statusKeys: {x: \"trust me\"}\n", `spec.statusKeys.x (line 6): is neither an SSH public key`},
		{"a private key", "  kubevirt: {version: v1.8.4}\n  rings: [{name: a, clusters: [x]}]\n  statusKeys: {x: \"-----BEGIN OPENSSH PRIVATE KEY-----\"}\n", `spec.statusKeys.x (line 6): is neither`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := planner.ParseFleet([]byte(fleetHead + tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			if !errors.Is(err, planner.ErrInvalidDesired) {
				t.Errorf("%v is not an invalid-file error", err)
			}
		})
	}
}

func TestRingGate(t *testing.T) {
	f := mustFleet(t, goodFleet)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ok := func(since time.Duration) planner.Peer {
		return planner.Peer{Found: true, Phase: "Succeeded", Version: "v1.8.4", Current: true, ReadySince: now.Add(-since)}
	}
	for _, tc := range []struct {
		name    string
		cluster string
		peers   map[string]planner.Peer
		open    bool
		halted  bool
		want    string
		recheck time.Time
	}{
		{name: "the first ring never waits", cluster: "lab-1", open: true},
		{name: "the canary is soaking", cluster: "eu-2", peers: map[string]planner.Peer{"lab-1": ok(20 * time.Minute)},
			want: "waiting for ring canary: lab-1 on v1.8.4 for 20m of 1h", recheck: now.Add(40 * time.Minute)},
		{name: "the canary soaked", cluster: "eu-2", peers: map[string]planner.Peer{"lab-1": ok(time.Hour)}, open: true},
		{name: "the canary runs another version", cluster: "eu-2",
			peers: map[string]planner.Peer{"lab-1": {Found: true, Phase: "Progressing", Version: "v1.7.4", Current: true}},
			want:  "waiting for ring canary: lab-1 is Progressing at v1.7.4, not yet Succeeded on v1.8.4"},
		{name: "a failed canary halts", cluster: "eu-2",
			peers:  map[string]planner.Peer{"lab-1": {Found: true, Phase: "Failed", Reason: "HopFailed", Message: "virt-handler crashed", Version: "v1.7.4"}},
			halted: true, want: "rollout halted: lab-1 (ring canary) is Failed HopFailed: virt-handler crashed"},
		{name: "a canary that has not read this fleet file yet", cluster: "eu-2",
			peers: map[string]planner.Peer{"lab-1": {Found: true, Phase: "Succeeded", Version: "v1.8.4"}},
			want:  "waiting for ring canary: lab-1 has not acted on this fleet file yet (Succeeded)"},
		{name: "a status that cannot be proven waits like a missing one", cluster: "eu-2",
			peers: map[string]planner.Peer{"lab-1": {MissingSince: now.Add(-time.Hour), Unknown: "its branch head is not signed"}},
			want:  "waiting for ring canary: lab-1 has no status it can prove (its branch head is not signed) yet"},
		{name: "and halts past the limit", cluster: "eu-2",
			peers:  map[string]planner.Peer{"lab-1": {MissingSince: now.Add(-3 * time.Hour), Unknown: "signed by another key"}},
			halted: true, want: "lab-1 (ring canary) has had no status it can prove (signed by another key) for 3h"},
		{name: "a missing status waits, then halts", cluster: "eu-2",
			peers: map[string]planner.Peer{"lab-1": {MissingSince: now.Add(-time.Hour)}},
			want:  "waiting for ring canary: lab-1 has no status file yet"},
		{name: "missing past the limit", cluster: "eu-2",
			peers:  map[string]planner.Peer{"lab-1": {MissingSince: now.Add(-3 * time.Hour)}},
			halted: true, want: "lab-1 (ring canary) has had no status file for 3h (spec.halt.statusMissingAfter 2h)"},
		{name: "prod waits for staging's soak, the pinned cluster aside", cluster: "ap-1",
			peers: map[string]planner.Peer{"lab-1": ok(48 * time.Hour), "eu-2": ok(23 * time.Hour)},
			want:  "waiting for ring staging: eu-2 on v1.8.4 for 23h of 24h", recheck: now.Add(time.Hour)},
		{name: "a halt in any earlier ring wins over a wait", cluster: "ap-1",
			peers:  map[string]planner.Peer{"lab-1": {Found: true, Phase: "Refused", Reason: "KnownRisk"}, "eu-2": ok(time.Hour)},
			halted: true, want: "lab-1 (ring canary) is Refused KnownRisk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := f.Gate(tc.cluster, "v1.8.4", tc.peers, now)
			if g.Open != tc.open || g.Halted != tc.halted || !strings.Contains(g.Message, tc.want) || !g.RecheckAt.Equal(tc.recheck) {
				t.Errorf("got %+v", g)
			}
		})
	}
	if got := f.EarlierClusters("ap-1"); strings.Join(got, ",") != "lab-1,eu-2" {
		t.Errorf("prod is gated by %v, want lab-1 and eu-2 (us-3 is pinned)", got)
	}
}

// bigFleet is a fleet file of n clusters in rings of 1, n/20 and the
// rest, each with an SSH status key, as a platform team writes it.
func bigFleet(n int) string {
	var b strings.Builder
	b.WriteString(fleetHead + "  kubevirt: {version: v1.8.4}\n  rings:\n")
	ring2 := max(1, n/20)
	for _, r := range []struct {
		name     string
		from, to int
	}{{"canary", 0, 1}, {"early", 1, 1 + ring2}, {"prod", 1 + ring2, n}} {
		b.WriteString("  - name: " + r.name + "\n    clusters:\n")
		for i := r.from; i < r.to; i++ {
			fmt.Fprintf(&b, "    - cluster-%04d\n", i)
		}
	}
	b.WriteString("  statusKeys:\n")
	for i := range n {
		fmt.Fprintf(&b, "    cluster-%04d: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI%043d\n", i, i)
	}
	return b.String()
}

// TestAFleetOfTheLargestSizeFits: 2,000 clusters with a status key each
// (≈ 150 KiB) parse; a file over MaxFleetSize is refused, naming the limit.
func TestAFleetOfTheLargestSizeFits(t *testing.T) {
	f := mustFleet(t, bigFleet(2000))
	if len(f.StatusKeys) != 2000 || len(f.Rings[2].Clusters) != 1899 {
		t.Errorf("%d keys, last ring %d clusters", len(f.StatusKeys), len(f.Rings[2].Clusters))
	}
	_, err := planner.ParseFleet([]byte(bigFleet(2000) + "#" + strings.Repeat("x", planner.MaxFleetSize)))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("over the %d-byte limit", planner.MaxFleetSize)) {
		t.Errorf("an oversized fleet file: %v", err)
	}
}
