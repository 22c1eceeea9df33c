package planner_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
)

var locked = func(v string) planner.Observed {
	return planner.Observed{Installed: v, Mode: planner.ModeLocked, OperatorVersion: v, KubeVirt: true, OperatorPresent: true}
}

func TestComputeUpgradePaths(t *testing.T) {
	cat := realCatalog(t)
	tests := []struct {
		name      string
		spec      string
		installed string
		want      []string
	}{
		{
			name:      "strict steps through every patch of the current line then the latest of each line",
			spec:      `  version: v0.23.0`,
			installed: "v0.20.1",
			want:      []string{"v0.20.2", "v0.20.3", "v0.20.4", "v0.20.5", "v0.20.6", "v0.20.7", "v0.20.8", "v0.21.0", "v0.22.0", "v0.23.0"},
		},
		{
			name:      "latest patch jumps to the latest patch of the current line",
			spec:      "  version: v0.23.0\n  pathPolicy: LatestPatch",
			installed: "v0.20.1",
			want:      []string{"v0.20.8", "v0.21.0", "v0.22.0", "v0.23.0"},
		},
		{
			name:      "crossing the major goes from the last v0 line to v1.0",
			spec:      `  version: v1.0.0`,
			installed: "v0.58.2",
			want:      []string{"v0.59.2", "v1.0.0"},
		},
		{
			name:      "latest patch crossing the major is the same when already at the latest patch",
			spec:      "  version: v1.0.0\n  pathPolicy: LatestPatch",
			installed: "v0.58.2",
			want:      []string{"v0.59.2", "v1.0.0"},
		},
		{
			name:      "v0.47 exists only as v0.47.1",
			spec:      `  version: v0.48.0`,
			installed: "v0.46.1",
			want:      []string{"v0.47.1", "v0.48.0"},
		},
		{
			name:      "a v0.17 pre-release is accepted as a source",
			spec:      `  version: v0.17.0`,
			installed: "v0.17.0-alpha.1",
			want:      []string{"v0.17.0"},
		},
		{
			name:      "from a v0.17 pre-release strict walks every v0.17 patch",
			spec:      `  version: v0.18.0`,
			installed: "v0.17.0-alpha.1",
			want:      []string{"v0.17.0", "v0.17.1", "v0.17.2", "v0.17.3", "v0.17.4", "v0.18.0"},
		},
		{
			name:      "within one line strict stops at the target",
			spec:      `  version: v1.8.2`,
			installed: "v1.8.0",
			want:      []string{"v1.8.1", "v1.8.2"},
		},
		{
			name:      "within one line latest patch is one hop",
			spec:      "  version: v1.8.2\n  pathPolicy: LatestPatch",
			installed: "v1.8.0",
			want:      []string{"v1.8.2"},
		},
		{
			name:      "a pre-release target named exactly is the last hop",
			spec:      `  version: v1.9.0-rc.1`,
			installed: "v1.8.4",
			want:      []string{"v1.9.0-rc.1"},
		},
		{
			name:      "pre-releases are never intermediate hops",
			spec:      `  version: v1.1.0`,
			installed: "v0.59.2",
			want:      []string{"v1.0.1", "v1.1.0"},
		},
		{
			name:      "constraint resolves to the highest stable release it matches",
			spec:      `  version: "~1.8"`,
			installed: "v1.7.4",
			want:      []string{"v1.8.4"},
		},
		{
			name:      "range constraint",
			spec:      `  version: ">= 1.6, < 1.8"`,
			installed: "v1.6.6",
			want:      []string{"v1.7.4"},
		},
		{
			name:      "latest is the highest stable tag",
			spec:      `  version: latest`,
			installed: "v1.8.4",
			want:      []string{"v1.9.0"},
		},
		{
			name:      "a v0.60 pre-release target follows v0.59",
			spec:      `  version: v0.60.0-alpha.0`,
			installed: "v0.59.2",
			want:      []string{"v0.60.0-alpha.0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := planner.Compute(mustDesired(t, tt.spec), locked(tt.installed), cat)
			if err != nil {
				t.Fatalf("Compute(%s from %s): %v", tt.spec, tt.installed, err)
			}
			want := tt.want
			if diff := cmp.Diff(want, hopsOf(p)); diff != "" {
				t.Errorf("hops from %s for %q (-want +got):\n%s", tt.installed, tt.spec, diff)
			}
			if p.Action != planner.ActionUpgrade || p.From != tt.installed || p.To != want[len(want)-1] {
				t.Errorf("plan = %s %s -> %s, want Upgrade %s -> %s", p.Action, p.From, p.To, tt.installed, want[len(want)-1])
			}
			for i, s := range p.Steps {
				if i > 0 && s.From != p.Steps[i-1].To {
					t.Errorf("step %d starts at %s, previous ended at %s", i, s.From, p.Steps[i-1].To)
				}
			}
		})
	}
}

func TestComputeLongestChain(t *testing.T) {
	p, err := planner.Compute(mustDesired(t, `  version: v1.9.0`), locked("v0.17.0"), realCatalog(t))
	if err != nil {
		t.Fatal(err)
	}
	// 4 more v0.17 patches, then the latest of v0.18..v0.59 (42 lines), then v1.0..v1.8 (9), then v1.9.0.
	if got, want := len(p.Steps), 4+42+9+1; got != want {
		t.Fatalf("v0.17.0 -> v1.9.0: %d hops, want %d: %v", got, want, hopsOf(p))
	}
}

func TestComputeMethods(t *testing.T) {
	cat := realCatalog(t)
	tests := []struct {
		name   string
		method string
		mode   planner.Mode
		want   planner.Method
	}{
		{"auto on a locked CR applies the operator", "Auto", planner.ModeLocked, planner.MethodOperator},
		{"auto on a pinned CR applies the operator then moves the tag", "Auto", planner.ModeImageTag, planner.MethodOperatorThenImageTag},
		{"operator method on a pinned CR applies the operator", "Operator", planner.ModeImageTag, planner.MethodOperator},
		{"image tag method patches the tag", "ImageTag", planner.ModeLocked, planner.MethodImageTag},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := locked("v1.7.4")
			o.Mode = tt.mode
			p, err := planner.Compute(mustDesired(t, "  version: v1.8.4\n  method: "+tt.method), o, cat)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range p.Steps {
				if s.Method != tt.want {
					t.Errorf("step %s method %s, want %s", s, s.Method, tt.want)
				}
			}
		})
	}
}

func TestComputeNoneAndInstall(t *testing.T) {
	cat := realCatalog(t)
	t.Run("same version is no action", func(t *testing.T) {
		p, err := planner.Compute(mustDesired(t, `  version: v1.8.4`), locked("v1.8.4"), cat)
		if err != nil || p.Action != planner.ActionNone || len(p.Steps) != 0 {
			t.Fatalf("got %+v, %v; want action None with no steps", p, err)
		}
	})
	t.Run("present with nothing installed is one install step", func(t *testing.T) {
		p, err := planner.Compute(mustDesired(t, `  version: "~1.1"`), planner.Observed{}, cat)
		if err != nil {
			t.Fatal(err)
		}
		want := []planner.Step{{Type: planner.StepInstall, To: "v1.1.1", Method: planner.MethodOperator}}
		if diff := cmp.Diff(want, p.Steps); diff != "" || p.Action != planner.ActionInstall {
			t.Errorf("install plan %s (-want +got):\n%s", p.Action, diff)
		}
	})
	t.Run("install with the image tag method pins the tag", func(t *testing.T) {
		p, err := planner.Compute(mustDesired(t, "  version: v1.1.1\n  method: ImageTag"), planner.Observed{}, cat)
		if err != nil || p.Steps[0].Method != planner.MethodImageTag {
			t.Fatalf("got %+v, %v; want an ImageTag install", p.Steps, err)
		}
	})
	t.Run("absent with nothing installed is no action", func(t *testing.T) {
		p, err := planner.Compute(mustDesired(t, `  state: Absent`), planner.Observed{}, cat)
		if err != nil || p.Action != planner.ActionNone {
			t.Fatalf("got %+v, %v; want None", p, err)
		}
	})
}

func TestComputeTeardown(t *testing.T) {
	cat := realCatalog(t)
	types := func(p planner.Plan) []planner.StepType {
		var out []planner.StepType
		for _, s := range p.Steps {
			out = append(out, s.Type)
		}
		return out
	}
	tests := []struct {
		name string
		spec string
		obs  planner.Observed
		want []planner.StepType
	}{
		{
			name: "teardown runs in the documented order",
			spec: `  state: Absent`,
			obs:  locked("v1.9.0"),
			want: []planner.StepType{planner.StepDeleteKubeVirt, planner.StepDeleteLeftovers, planner.StepDeleteOperator},
		},
		{
			name: "a CR stuck without its operator gets its finalizers removed when opted in",
			spec: "  state: Absent\n  teardown:\n    removeStuckFinalizers: true",
			obs:  planner.Observed{Installed: "v1.1.0", KubeVirt: true, Terminating: true},
			want: []planner.StepType{planner.StepRemoveStuckFinalizers, planner.StepDeleteKubeVirt, planner.StepDeleteLeftovers},
		},
		{
			name: "a stuck CR without the opt-in is only deleted and waited for",
			spec: `  state: Absent`,
			obs:  planner.Observed{Installed: "v1.1.0", KubeVirt: true, Terminating: true},
			want: []planner.StepType{planner.StepDeleteKubeVirt, planner.StepDeleteLeftovers},
		},
		{
			name: "an operator without a CR but with leftovers is removed with them",
			spec: `  state: Absent`,
			obs:  planner.Observed{OperatorVersion: "v0.26.0", OperatorPresent: true, Leftovers: 3},
			want: []planner.StepType{planner.StepDeleteLeftovers, planner.StepDeleteOperator},
		},
		{
			name: "an operator alone is removed without a leftover step",
			spec: `  state: Absent`,
			obs:  planner.Observed{OperatorVersion: "v1.9.0", OperatorPresent: true},
			want: []planner.StepType{planner.StepDeleteOperator},
		},
		{
			name: "leftovers alone are cleaned",
			spec: `  state: Absent`,
			obs:  planner.Observed{Leftovers: 2},
			want: []planner.StepType{planner.StepDeleteLeftovers},
		},
		{
			name: "what a gone operator left (manifest objects, its CRDs and RBAC) is removed: absent means absent",
			spec: `  state: Absent`,
			obs:  planner.Observed{OperatorObjects: 9, Remnants: 14},
			want: []planner.StepType{planner.StepDeleteOperator},
		},
		{
			name: "CRDs stuck on the operator's finalizer are released when opted in",
			spec: "  state: Absent\n  teardown:\n    removeStuckFinalizers: true",
			obs:  planner.Observed{StuckCRDs: 2, Remnants: 2, OperatorObjects: 3},
			want: []planner.StepType{planner.StepRemoveStuckFinalizers, planner.StepDeleteOperator},
		},
		{
			name: "workloads with the opt-in and an empty uninstall strategy",
			spec: "  state: Absent\n  teardown:\n    allowWorkloadRemoval: true",
			obs:  func() planner.Observed { o := locked("v1.9.0"); o.Workloads = 3; return o }(),
			want: []planner.StepType{planner.StepDeleteKubeVirt, planner.StepDeleteLeftovers, planner.StepDeleteOperator},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := planner.Compute(mustDesired(t, tt.spec), tt.obs, cat)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, types(p)); diff != "" || p.Action != planner.ActionTeardown {
				t.Errorf("teardown of %+v, action %s (-want +got):\n%s", tt.obs, p.Action, diff)
			}
		})
	}
}

func TestComputeRefusals(t *testing.T) {
	cat := realCatalog(t)
	gap := catalogOf(t, "v0.20.8", "v0.22.0", "v0.23.0")
	withVMs := func(strategy string) planner.Observed {
		o := locked("v1.9.0")
		o.Workloads, o.UninstallStrategy = 2, strategy
		return o
	}
	tests := []struct {
		name string
		spec string
		obs  planner.Observed
		cat  *planner.Catalog
		want planner.Reason
		msg  string
	}{
		{"exact tag not in the catalog", `  version: v1.99.0`, locked("v1.8.4"), cat, planner.ReasonUnknownVersion, "not in the release catalog"},
		{"constraint matching nothing", `  version: "~2.0"`, locked("v1.8.4"), cat, planner.ReasonUnknownVersion, "no stable release"},
		{"downgrade", `  version: v1.7.4`, locked("v1.8.4"), cat, planner.ReasonDowngradeNotSupported, "older than installed v1.8.4"},
		{"replayed older desired version", `  version: v1.1.0`, locked("v1.9.0"), cat, planner.ReasonDowngradeNotSupported, "does not support downgrades"},
		{"install below a newer running operator", `  version: v1.7.4`, planner.Observed{OperatorVersion: "v1.8.4", OperatorPresent: true}, cat, planner.ReasonDowngradeNotSupported, "downgrade it"},
		{"installed line older than v0.17", `  version: v0.20.0`, locked("v0.16.3"), cat, planner.ReasonUnsupportedSourceVersion, "older than the v0.17 line"},
		{"installed version that is not a tag", `  version: v1.1.0`, locked("v0.0.0-master+$Format:%h$"), cat, planner.ReasonUnsupportedSourceVersion, "not a release tag"},
		{"target older than v0.17", `  version: v0.16.0`, planner.Observed{}, catalogOf(t, "v0.16.0", "v0.17.0"), planner.ReasonUnsupportedSourceVersion, "predates v0.17.0"},
		{"missing minor between source and target", `  version: v0.23.0`, locked("v0.20.8"), gap, planner.ReasonNoUpgradePath, "between v0.20 and v0.22"},
		{"missing first line of the next major", `  version: v1.1.0`, locked("v0.59.2"), catalogOf(t, "v0.59.2", "v1.1.0"), planner.ReasonNoUpgradePath, "between v0.59 and v1.1"},
		{"teardown with VMs and no opt-in", `  state: Absent`, withVMs(""), cat, planner.ReasonWorkloadsExist, "allowWorkloadRemoval"},
		{"removing remnants with VMs and no opt-in", `  state: Absent`, planner.Observed{Remnants: 5, Workloads: 2}, cat, planner.ReasonWorkloadsExist, "allowWorkloadRemoval"},
		{"teardown with VMs and a blocking strategy", "  state: Absent\n  teardown:\n    allowWorkloadRemoval: true", withVMs("BlockUninstallIfWorkloadsExist"), cat, planner.ReasonWorkloadsExist, "BlockUninstallIfWorkloadsExist"},
		{"desired state never parsed", ``, locked("v1.8.4"), cat, planner.ReasonInvalidDesiredState, "ParseDesired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d planner.Desired
			if tt.spec != "" {
				d = mustDesired(t, tt.spec)
			}
			_, err := planner.Compute(d, tt.obs, tt.cat)
			var re *planner.RefusalError
			if !errors.As(err, &re) {
				t.Fatalf("Compute(%q, %+v) = %v, want a refusal %s", tt.spec, tt.obs, err, tt.want)
			}
			if re.Reason != tt.want || fault.ReasonOf(err) != tt.want {
				t.Errorf("reason %s, want %s (%v)", re.Reason, tt.want, err)
			}
			if !strings.Contains(re.Message, tt.msg) {
				t.Errorf("message %q does not mention %q", re.Message, tt.msg)
			}
		})
	}
}

func TestPlanID(t *testing.T) {
	cat := realCatalog(t)
	d := mustDesired(t, `  version: v1.8.4`)
	a, _ := planner.Compute(d, locked("v1.6.6"), cat)
	b, _ := planner.Compute(d, locked("v1.6.6"), cat)
	if a.ID != b.ID || len(a.ID) != 8 {
		t.Fatalf("same inputs gave ids %q and %q, want one 8-digit id", a.ID, b.ID)
	}
	vms := locked("v1.6.6")
	vms.Workloads = 7
	if c, _ := planner.Compute(d, vms, cat); c.ID != a.ID {
		t.Errorf("VMs starting changed an upgrade's id: %s -> %s", a.ID, c.ID)
	}
	differs := map[string]planner.Plan{}
	pinned := locked("v1.6.6")
	pinned.Mode = planner.ModeImageTag
	differs["mode"], _ = planner.Compute(d, pinned, cat)
	differs["catalog"], _ = planner.Compute(d, locked("v1.6.6"), catalogOf(t, "v1.6.6", "v1.7.4", "v1.8.4"))
	differs["source"], _ = planner.Compute(d, locked("v1.7.4"), cat)
	for what, p := range differs {
		if p.ID == a.ID {
			t.Errorf("a different %s kept the plan id %s", what, a.ID)
		}
	}
}

func TestPlanContinues(t *testing.T) {
	cat := realCatalog(t)
	d := mustDesired(t, `  version: v1.8.4`)
	whole, _ := planner.Compute(d, locked("v1.6.6"), cat)
	rest, _ := planner.Compute(d, locked("v1.7.4"), cat)
	if !rest.Continues(whole) {
		t.Errorf("plan %v should continue %v", hopsOf(rest), hopsOf(whole))
	}
	other, _ := planner.Compute(mustDesired(t, `  version: v1.9.0`), locked("v1.7.4"), cat)
	if other.Continues(whole) {
		t.Errorf("plan to %s must not continue a plan to %s", other.To, whole.To)
	}
}

// TestAPlanHoldsAtMostMaxHops: a catalog that lists hundreds of patches of
// one line (a hostile or broken mirror) cannot make a plan of hundreds of
// hops; the refusal names the count.
func TestAPlanHoldsAtMostMaxHops(t *testing.T) {
	tags := []string{"v1.7.0"}
	for i := 1; i <= planner.MaxHops+10; i++ {
		tags = append(tags, fmt.Sprintf("v1.7.%d", i))
	}
	last := tags[len(tags)-1]
	_, err := planner.Compute(mustDesired(t, "  version: "+last), locked("v1.7.0"), catalogOf(t, tags...))
	if fault.ReasonOf(err) != planner.ReasonNoUpgradePath || !strings.Contains(err.Error(), fmt.Sprintf("%d hops", planner.MaxHops+10)) {
		t.Fatalf("a %d-hop path: %v", planner.MaxHops+10, err)
	}
	// LatestPatch takes the same catalog in one hop.
	if _, err := planner.Compute(mustDesired(t, "  version: "+last+"\n  pathPolicy: LatestPatch"), locked("v1.7.0"), catalogOf(t, tags...)); err != nil {
		t.Fatalf("LatestPatch: %v", err)
	}
}
