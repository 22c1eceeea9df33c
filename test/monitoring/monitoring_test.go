package monitoring

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kvgitops/kvgitops/agent"
)

const component = "../../deploy/components/monitoring"

// rules is the PrometheusRule's spec (its groups), and every expression.
func rules(t *testing.T) (spec map[string]any, exprs []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(component, "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert, Expr string
				}
			}
		}
	}
	if err := yaml.Unmarshal(data, &pr); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	spec, _ = raw["spec"].(map[string]any)
	return spec, exprs
}

// promtool is Prometheus's promtool: $PROMTOOL, else the one hack/tools.sh
// builds (make test passes it).
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	out, err := exec.Command("../../hack/tools.sh").Output()
	if err != nil {
		t.Fatalf("hack/tools.sh (builds promtool): %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "promtool")
}

// TestAlertRulesPassPromtool: the PrometheusRule's groups are valid rules
// (promtool check rules) and each alert fires after its "for", on the
// leader's series only, with its labels and annotations (promtool test
// rules, alerts_test.yaml).
func TestAlertRulesPassPromtool(t *testing.T) {
	tool := promtool(t)
	spec, _ := rules(t)
	dir := t.TempDir()
	data, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(component, "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(tool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

var metricName = regexp.MustCompile(`\bkvgitops_[a-z_]+`)

// TestRulesAndDashboardNameExportedMetrics: every kvgitops_ metric the
// alert rules and the dashboard query is one the agent exports (a renamed
// metric would leave a silent alert or an empty panel).
func TestRulesAndDashboardNameExportedMetrics(t *testing.T) {
	exported := agent.NewMetrics().Names()
	known := func(name string) bool {
		for _, suffix := range []string{"", "_bucket", "_count", "_sum"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(exported, base) {
				return true
			}
		}
		return false
	}
	_, exprs := rules(t)
	data, err := os.ReadFile(filepath.Join(component, "kvgitops-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	used := 0
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			used++
			if !known(name) {
				t.Errorf("%q queries %s, which the agent does not export (it has %v)", e, name, exported)
			}
		}
	}
	if used == 0 {
		t.Error("no kvgitops_ metric found in the rules and the dashboard")
	}
}
