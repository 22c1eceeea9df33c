package planner_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/planner"
)

// TestClusterServesRelease: a release whose operator manifest ships a
// v1beta1 CRD is refused on Kubernetes 1.22+, before anything is applied,
// naming the release, the API and the cluster's version; it is planned
// where the API is served, and without a known version the check says it
// was not made.
func TestClusterServesRelease(t *testing.T) {
	cat := realCatalog(t)
	tests := []struct {
		name      string
		spec      string
		installed string
		mode      planner.Mode
		kube      string
		want      planner.CheckResult // of the first check
		refused   bool
	}{
		{"install of a v1beta1-CRD release on 1.37 is refused", "  version: v0.35.0", "", planner.ModeLocked, "v1.37.2", planner.CheckRefuse, true},
		{"install of a v1beta1-CRD release on 1.21 is planned", "  version: v0.35.0", "", planner.ModeLocked, "v1.21.14", planner.CheckPass, false},
		{"install of a v1 release on 1.37 passes", "  version: v1.4.0", "", planner.ModeLocked, "v1.37.2", planner.CheckPass, false},
		{"a hop into the v1beta1 era is refused at the step that needs it", "  version: v0.40.0", "v0.38.1", planner.ModeLocked, "1.30", planner.CheckRefuse, true},
		{"unknown cluster version: not checked", "  version: v0.35.0", "", planner.ModeLocked, "", planner.CheckNotChecked, false},
		{"a managed distribution's version string", "  version: v0.39.2", "", planner.ModeLocked, "v1.30.4-eks-a737599", planner.CheckRefuse, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := planner.Observed{KubernetesVersion: tt.kube}
			if tt.installed != "" {
				o = locked(tt.installed)
				o.KubernetesVersion = tt.kube
			}
			p, err := planner.Compute(mustDesired(t, tt.spec), o, cat)
			checks := p.Checks
			if tt.refused {
				re, ok := err.(*planner.RefusalError)
				if !ok || re.Reason != planner.ReasonAPIVersionNotServed {
					t.Fatalf("Compute: %v, want an APIVersionNotServed refusal", err)
				}
				for _, want := range []string{"apiextensions.k8s.io/v1beta1", tt.kube} {
					if !strings.Contains(re.Message, want) {
						t.Errorf("message %q does not name %q", re.Message, want)
					}
				}
				checks = re.Checks
			} else if err != nil {
				t.Fatalf("Compute: %v", err)
			}
			if len(checks) == 0 || checks[0].Name != planner.CheckClusterServesRelease {
				t.Fatalf("checks %+v: want %s first", checks, planner.CheckClusterServesRelease)
			}
			var got planner.CheckResult
			for _, c := range checks {
				if c.Name == planner.CheckClusterServesRelease && (c.Result != planner.CheckPass || got == "") {
					got = c.Result
				}
			}
			if got != tt.want {
				t.Errorf("check result %s, want %s (checks %+v)", got, tt.want, checks)
			}
		})
	}
}

// TestImageTagHopsNeedNoManifestCheck: an ImageTag hop applies no manifest,
// so the served-API check does not apply to it.
func TestImageTagHopsNeedNoManifestCheck(t *testing.T) {
	o := locked("v0.34.0")
	o.Mode, o.KubernetesVersion = planner.ModeImageTag, "v1.37.2"
	p, err := planner.Compute(mustDesired(t, "  version: v0.35.0\n  method: ImageTag"), o, realCatalog(t))
	if err != nil {
		t.Fatalf("Compute: %v", err)
	}
	for _, c := range p.Checks {
		if c.Name == planner.CheckClusterServesRelease {
			t.Errorf("check %+v, want no served-API check for an ImageTag hop", c)
		}
	}
}

// TestImageTagStrategyBug: from v0.58.1 through v1.6.x and v1.7.0-rc.0 the
// operator writes its own install strategy whatever spec.imageTag says
// (kubevirt#16050). An explicit ImageTag hop under such an operator is
// refused naming the operator and the bug; Auto on a pinned CR unpins
// (Operator) for every hop whose target operator has the bug, and stays
// unpinned.
func TestImageTagStrategyBug(t *testing.T) {
	cat := realCatalog(t)
	pinned := func(installed, operator string) planner.Observed {
		o := locked(installed)
		o.Mode, o.OperatorVersion = planner.ModeImageTag, operator
		return o
	}
	t.Run("explicit ImageTag under a buggy operator is refused", func(t *testing.T) {
		for _, op := range []string{"v0.58.1", "v0.59.2", "v1.6.6", "v1.7.0-rc.0"} {
			_, err := planner.Compute(mustDesired(t, "  version: v1.8.4\n  method: ImageTag"), pinned("v1.7.4", op), cat)
			re, ok := err.(*planner.RefusalError)
			if !ok || re.Reason != planner.ReasonImageTagStrategyBug || !strings.Contains(re.Message, op) || !strings.Contains(re.Message, "kubevirt#16050") {
				t.Errorf("operator %s: %v, want ImageTagStrategyBug naming it and the bug", op, err)
			}
		}
	})
	t.Run("explicit ImageTag under a fixed operator is planned", func(t *testing.T) {
		for _, op := range []string{"v0.58.0", "v1.7.0-rc.1", "v1.7.4"} {
			if _, err := planner.Compute(mustDesired(t, "  version: v1.8.4\n  method: ImageTag"), pinned("v1.7.4", op), cat); err != nil {
				t.Errorf("operator %s: %v", op, err)
			}
		}
	})
	tests := []struct {
		name, installed, version string
		want                     []planner.Method
	}{
		{"into the buggy range: Operator from the first buggy target on", "v1.5.3", "v1.7.4", []planner.Method{planner.MethodOperator, planner.MethodOperator}},
		{"out of it: the tag moves with the operator", "v1.7.4", "v1.8.4", []planner.Method{planner.MethodOperatorThenImageTag}},
		{"v0.58.0 to v0.58.1: the first buggy operator", "v0.58.0", "v0.58.1", []planner.Method{planner.MethodOperator}},
	}
	for _, tt := range tests {
		t.Run("auto on a pinned CR: "+tt.name, func(t *testing.T) {
			p, err := planner.Compute(mustDesired(t, "  version: "+tt.version), pinned(tt.installed, tt.installed), cat)
			if err != nil {
				t.Fatal(err)
			}
			var got []planner.Method
			for _, s := range p.Steps {
				got = append(got, s.Method)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("methods %v, want %v (steps %v)", got, tt.want, p.Steps)
			}
		})
	}
}

// TestMoreThanOneKubeVirtIsRefused: virt-operator ignores every CR while
// there is more than one; the plan names them all, and does not advise
// deleting any (on an HCO or Harvester cluster one of them is the one
// every VM depends on).
func TestMoreThanOneKubeVirtIsRefused(t *testing.T) {
	for _, spec := range []string{"  version: v1.8.4", "  state: Absent"} {
		o := locked("v1.7.4")
		o.StrayKubeVirts = []string{"default/kubevirt", "team-a/kv"}
		_, err := planner.Compute(mustDesired(t, spec), o, realCatalog(t))
		re, ok := err.(*planner.RefusalError)
		if !ok || re.Reason != planner.ReasonMultipleKubeVirts || !strings.Contains(re.Message, `"default/kubevirt", "team-a/kv"`) {
			t.Errorf("%s: %v, want MultipleKubeVirts naming both", spec, err)
		}
		if ok && (strings.Contains(re.Message, "delete the others") || !strings.Contains(re.Message, "Delete none of them")) {
			t.Errorf("%s: %q advises deleting KubeVirt CRs", spec, re.Message)
		}
	}
}
