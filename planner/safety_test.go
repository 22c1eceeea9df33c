package planner_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/planner"
)

// safetyCase is one upgrade-safety table row on the real catalog.
type safetyCase struct {
	name      string
	spec      string
	installed string // "" for an install
	kube      string
	gates     []string
	extra     string // the repository's risks file, "" for none
	// want is "check=Result" for the check looked at (at step, when set).
	check  string
	step   int
	result planner.CheckResult
	// refused is the refusal reason; every message part must appear in
	// the check's message (and the refusal's, when refused).
	refused planner.Reason
	message []string
	hops    []string // when set, the plan's hops
}

func (tt safetyCase) run(t *testing.T) {
	t.Helper()
	d := mustDesired(t, tt.spec)
	if tt.extra != "" {
		rs, err := planner.ParseRisks([]byte("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtUpgradeRisks\nrisks:\n" + tt.extra))
		if err != nil {
			t.Fatalf("ParseRisks: %v", err)
		}
		d.ExtraRisks = rs
	}
	o := planner.Observed{}
	if tt.installed != "" {
		o = locked(tt.installed)
	}
	o.KubernetesVersion, o.FeatureGates = tt.kube, tt.gates
	p, err := planner.Compute(d, o, realCatalog(t))
	checks := p.Checks
	var re *planner.RefusalError
	switch {
	case tt.refused != "":
		if !errors.As(err, &re) || re.Reason != tt.refused {
			t.Fatalf("Compute: %v, want a %s refusal", err, tt.refused)
		}
		checks = re.Checks
		for _, m := range tt.message {
			if !strings.Contains(re.Message, m) {
				t.Errorf("refusal %q does not name %q", re.Message, m)
			}
		}
	case err != nil:
		t.Fatalf("Compute: %v", err)
	}
	if tt.hops != nil && !slices.Equal(hopsOf(p), tt.hops) {
		t.Errorf("hops %v, want %v", hopsOf(p), tt.hops)
	}
	i := slices.IndexFunc(checks, func(c planner.Check) bool {
		return c.Name == tt.check && (tt.step == 0 || c.Step == tt.step)
	})
	if i < 0 {
		t.Fatalf("no check %s at step %d in %+v", tt.check, tt.step, checks)
	}
	c := checks[i]
	if c.Result != tt.result {
		t.Errorf("%s: %s (%s), want %s", c.Name, c.Result, c.Message, tt.result)
	}
	for _, m := range tt.message {
		if !strings.Contains(c.Message, m) {
			t.Errorf("%s message %q does not name %q", c.Name, c.Message, m)
		}
	}
}

// TestKubernetesCompatibility: every hop's target is compared with the
// cluster's Kubernetes; outside its range is a warning naming both
// versions and the source, a refusal under spec.compatibility Strict.
func TestKubernetesCompatibility(t *testing.T) {
	for _, tt := range []safetyCase{
		{name: "within the range", spec: "  version: v1.8.4", installed: "v1.7.4", kube: "v1.34.2",
			check: planner.CheckKubernetesCompatible, result: planner.CheckPass, message: []string{"1.34", "1.33-1.35"}},
		{name: "a hop crossing the range's lower bound warns at that step", spec: "  version: v1.8.4", installed: "v1.5.2", kube: "1.31.4",
			check: planner.CheckKubernetesCompatible, step: 3, result: planner.CheckWarn,
			message: []string{"Kubernetes 1.31", "v1.7.4", "1.32-1.34", "support matrix"}, hops: []string{"v1.5.3", "v1.6.6", "v1.7.4", "v1.8.4"}},
		{name: "the same hop's earlier steps pass", spec: "  version: v1.8.4", installed: "v1.5.2", kube: "1.31.4",
			check: planner.CheckKubernetesCompatible, step: 2, result: planner.CheckPass},
		{name: "strict refuses at the first step outside", spec: "  version: v1.8.4\n  compatibility: Strict", installed: "v1.5.2", kube: "1.31.4",
			check: planner.CheckKubernetesCompatible, step: 3, result: planner.CheckRefuse, refused: planner.ReasonKubernetesUnsupported,
			message: []string{"v1.7.4", "1.31"}},
		{name: "an old release's range is its CI's", spec: "  version: v0.30.0", kube: "1.21.0",
			check: planner.CheckKubernetesCompatible, result: planner.CheckWarn, message: []string{"1.13-1.18", "CI tested"}},
		{name: "unknown Kubernetes is not checked", spec: "  version: v1.8.4", installed: "v1.7.4",
			check: planner.CheckKubernetesCompatible, result: planner.CheckNotChecked, message: []string{"unknown"}},
		{name: "a managed distribution's version string", spec: "  version: v1.8.4\n  compatibility: Strict", installed: "v1.7.4", kube: "v1.30.4-eks-a737599",
			check: planner.CheckKubernetesCompatible, result: planner.CheckRefuse, refused: planner.ReasonKubernetesUnsupported, message: []string{"1.30", "1.33-1.35"}},
	} {
		t.Run(tt.name, tt.run)
	}
}

const acme = `- id: ACME-7
  to: {tags: [v1.6.6]}
  severity: Blocks
  summary: our CSI driver breaks on v1.6.6
  url: https://wiki.example.com/acme-7
`

// TestKnownRisks: built-in and repository risks on the real catalog; a
// blocker is planned around when the path allows, else refused naming it,
// its summary and link; accepted by id it passes; a risky hop warns.
func TestKnownRisks(t *testing.T) {
	for _, tt := range []safetyCase{
		{name: "a blocked target is refused", spec: "  version: v0.39.1", kube: "1.20.4",
			check: "KnownRisk/KV-5352", result: planner.CheckRefuse, refused: planner.ReasonKnownRisk,
			message: []string{"KV-5352", "image digests", "use v0.39.2", "https://github.com/kubevirt/kubevirt/issues/5352"}},
		{name: "accepted by id, it passes and says so", spec: "  version: v0.39.1\n  acceptRisks: [KV-5352]", kube: "1.20.4",
			check: "KnownRisk/KV-5352", result: planner.CheckPass, message: []string{"accepted in spec.acceptRisks"}},
		{name: "a blocked intermediate release is replaced by another of its line", spec: "  version: v1.8.4", installed: "v1.5.2", kube: "1.33.1", extra: acme,
			check: "KnownRisk/ACME-7", step: 2, result: planner.CheckPass, message: []string{"planned around ACME-7", "v1.6.5 instead of v1.6.6"},
			hops: []string{"v1.5.3", "v1.6.5", "v1.7.4", "v1.8.4"}},
		{name: "a blocked intermediate patch is skipped when the next hop is direct", spec: "  version: v1.6.6", installed: "v1.5.2", kube: "1.33.1",
			extra: "- id: ACME-8\n  to: {tags: [v1.5.3]}\n  severity: Blocks\n  summary: no\n",
			check: "KnownRisk/ACME-8", step: 1, result: planner.CheckPass, message: []string{"v1.5.3 is skipped, v1.5.2 -> v1.6.6 is a supported hop"},
			hops: []string{"v1.6.6"}},
		{name: "a blocker with no way around is refused", spec: "  version: v1.7.4", installed: "v1.6.6", kube: "1.33.1",
			extra: "- id: ACME-9\n  from: {min: v1.6.0, below: v1.7.0}\n  to: {min: v1.7.0, below: v1.8.0}\n  severity: Blocks\n  summary: our storage breaks\n  url: https://wiki.example.com/acme-9\n",
			check: "KnownRisk/ACME-9", result: planner.CheckRefuse, refused: planner.ReasonKnownRisk,
			message: []string{"ACME-9", "the repository's risks file", "our storage breaks", "https://wiki.example.com/acme-9"}},
		{name: "a conditional blocker warns: the condition cannot be checked", spec: "  version: v1.7.4", installed: "v1.6.6", kube: "1.33.1",
			extra: "- id: ACME-10\n  to: {tags: [v1.7.4]}\n  severity: Blocks\n  when: nodes run our old kernel\n  summary: VMs do not start\n",
			check: "KnownRisk/ACME-10", result: planner.CheckWarn, message: []string{"when nodes run our old kernel"}},
		{name: "a risky hop warns", spec: "  version: v1.7.4", installed: "v1.6.6", kube: "1.33.1",
			check: "KnownRisk/KV-16386", result: planner.CheckWarn, message: []string{"live migration", "https://github.com/kubevirt/kubevirt/issues/16386"}},
		{name: "a risk of a method is not met by the other", spec: "  version: v1.7.4\n  method: Operator", installed: "v1.6.6", kube: "1.33.1",
			check: planner.CheckKubernetesCompatible, result: planner.CheckPass},
	} {
		t.Run(tt.name, tt.run)
	}
}

// TestAcceptedRisksChangeThePlanID: an approval of a plan id covers what
// was shown: accepting a risk changes the id.
func TestAcceptedRisksChangeThePlanID(t *testing.T) {
	cat := realCatalog(t)
	o := locked("v1.6.6")
	o.KubernetesVersion = "1.33.1"
	warned, err := planner.Compute(mustDesired(t, "  version: v1.7.4"), o, cat)
	if err != nil {
		t.Fatal(err)
	}
	accepted, err := planner.Compute(mustDesired(t, "  version: v1.7.4\n  acceptRisks: [KV-16386]"), o, cat)
	if err != nil {
		t.Fatal(err)
	}
	if warned.ID == accepted.ID || !slices.Equal(hopsOf(warned), hopsOf(accepted)) {
		t.Errorf("ids %s and %s for the same hops %v", warned.ID, accepted.ID, hopsOf(warned))
	}
}

// TestFeatureGateChecks: the CR's gates against the target's: deprecated
// and GA gates warn, discontinued or removed ones warn or, under strict
// compatibility, refuse, naming the gate and the version.
func TestFeatureGateChecks(t *testing.T) {
	for _, tt := range []safetyCase{
		{name: "discontinued warns", spec: "  version: v1.3.0", installed: "v1.2.2", kube: "1.30.1", gates: []string{"Passt"},
			check: "FeatureGates/Passt", result: planner.CheckWarn, message: []string{"Passt", "discontinued since v1.3.0"}},
		{name: "discontinued refuses under strict", spec: "  version: v1.3.0\n  compatibility: Strict", installed: "v1.2.2", kube: "1.30.1", gates: []string{"Macvtap"},
			check: "FeatureGates/Macvtap", result: planner.CheckRefuse, refused: planner.ReasonFeatureGateRemoved, message: []string{"Macvtap", "v1.3.0"}},
		{name: "deprecated warns, even under strict", spec: "  version: v1.8.4\n  compatibility: Strict", installed: "v1.7.4", kube: "1.34.1", gates: []string{"DisableMDEVConfiguration"},
			check: "FeatureGates/DisableMDEVConfiguration", result: planner.CheckWarn, message: []string{"deprecated since v1.8.0"}},
		{name: "GA says the gate does nothing", spec: "  version: v1.6.6", installed: "v1.5.3", kube: "1.32.1", gates: []string{"VMPersistentState"},
			check: "FeatureGates/VMPersistentState", result: planner.CheckWarn, message: []string{"GA since v1.6.0"}},
		{name: "a gate already in its state is named once, at the first step", spec: "  version: v1.8.4", installed: "v1.6.6", kube: "1.33.1", gates: []string{"Passt"},
			check: "FeatureGates/Passt", step: 1, result: planner.CheckWarn},
	} {
		t.Run(tt.name, tt.run)
	}
	o := locked("v1.6.6")
	o.KubernetesVersion, o.FeatureGates = "1.33.1", []string{"Passt", "Snapshot"}
	p, err := planner.Compute(mustDesired(t, "  version: v1.8.4"), o, realCatalog(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Checks {
		if c.Step == 2 && strings.HasPrefix(c.Name, planner.CheckFeatureGates) {
			t.Errorf("step 2 repeats %s: %s", c.Name, c.Message)
		}
	}
}

// TestParseRisksNamesTheField: the repository's risks file is read as
// strictly as the desired file.
func TestParseRisksNamesTheField(t *testing.T) {
	head := "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtUpgradeRisks\nrisks:\n"
	ok := "- id: A-1\n  to: {tags: [v1.7.4]}\n  severity: Risky\n  summary: s\n"
	for _, tt := range []struct{ name, doc, want string }{
		{"severity", "- id: A-1\n  to: {}\n  severity: Fatal\n  summary: s\n", "risks[0].severity"},
		{"url scheme", "- id: A-1\n  to: {}\n  severity: Risky\n  summary: s\n  url: http://x.example/a\n", "risks[0].url"},
		{"duplicate id", ok + ok, "risks[1].id"},
		{"unknown field", "- id: A-1\n  to: {}\n  severity: Risky\n  summary: s\n  sevirity: Blocks\n", "sevirity"},
		{"tags and a bound", "- id: A-1\n  to: {tags: [v1.7.4], min: v1.7.0}\n  severity: Risky\n  summary: s\n", "risks[0].to"},
		{"not a tag", "- id: A-1\n  to: {min: 1.7}\n  severity: Risky\n  summary: s\n", "risks[0].to.min"},
		{"missing summary", "- id: A-1\n  to: {}\n  severity: Risky\n", "summary"},
		{"bad id", "- id: 'a b'\n  to: {}\n  severity: Risky\n  summary: s\n", "risks[0].id"},
		{"kind", "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nrisks: []\n", "kind"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := head + tt.doc
			if tt.name == "kind" {
				doc = tt.doc
			}
			_, err := planner.ParseRisks([]byte(doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseRisks: %v, want an error naming %s", err, tt.want)
			}
		})
	}
	rs, err := planner.ParseRisks([]byte(head + ok))
	if err != nil || len(rs) != 1 || rs[0].ID != "A-1" || rs[0].Severity != planner.SeverityRisky {
		t.Errorf("ParseRisks: %+v, %v", rs, err)
	}
}

// TestBuiltinRisksAreSourced: every built-in risk has a summary and an
// https link.
func TestBuiltinRisksAreSourced(t *testing.T) {
	for _, r := range planner.BuiltinRisks() {
		if r.Summary == "" || !strings.HasPrefix(r.URL, "https://github.com/kubevirt/") {
			t.Errorf("%s: summary %q, url %q", r.ID, r.Summary, r.URL)
		}
	}
}

// TestDrift: what differs from what kvgitops applied, field by field.
func TestDrift(t *testing.T) {
	o := locked("v1.8.4")
	o.OperatorImage = "quay.io/kubevirt/virt-operator:v1.8.4"
	applied := planner.AppliedFrom("abc", o)
	if d := applied.DriftFrom(o); len(d) != 0 {
		t.Errorf("no change, drift %+v", d)
	}
	o.ImageTag, o.ImageRegistry, o.OperatorImage = "v1.8.5-rc.0", "mirror.example.com/kubevirt", "evil.example/virt-operator:v1.8.4"
	var got []string
	for _, d := range applied.DriftFrom(o) {
		got = append(got, d.String())
	}
	want := []string{`spec.imageTag "v1.8.5-rc.0" (kvgitops left unset)`, `spec.imageRegistry "mirror.example.com/kubevirt" (kvgitops left unset)`,
		`virt-operator image "evil.example/virt-operator:v1.8.4" (kvgitops left "quay.io/kubevirt/virt-operator:v1.8.4")`}
	if !slices.Equal(got, want) {
		t.Errorf("drift\n%q\nwant\n%q", got, want)
	}
}
