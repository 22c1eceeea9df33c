package agent_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/agent"
)

func TestMetricsAfterAnUpgrade(t *testing.T) {
	w := newWorld(t, "  version: v1.7.4\n", "v1.6.6")
	m := agent.NewMetrics()
	w.agent = agent.New(agent.Config{ClusterName: "prod-east", Clock: w.clock.now, Metrics: m, Memory: w.memory}, w.repo, w.cluster, realCatalog)
	if _, err := w.settle(); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`kvgitops_reconcile_duration_seconds_count{result="success"}`,
		`kvgitops_hop_duration_seconds_count{result="Succeeded",type="Upgrade"} 1`,
		`kvgitops_plan_hops 0`,
		`kvgitops_current_version_info{version="v1.7.4"} 1`,
		`kvgitops_desired_version_info{version="v1.7.4"} 1`,
		`kvgitops_git_operations_total{operation="push",result="success"}`,
		`kvgitops_last_success_timestamp_seconds`,
		`kvgitops_suspended 0`,
		`kvgitops_vmi_disruptions_total 0`,
		`kvgitops_phase{phase="Succeeded"} 1`,
		`kvgitops_reason{phase="Succeeded",reason="UpToDate"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestHealthEndpoints(t *testing.T) {
	w := newWorld(t, "  version: v1.7.4\n", "v1.7.4")
	h := agent.NewHealth(w.agent).Handler()
	for _, path := range []string{"/healthz", "/readyz"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %d", path, rec.Code)
		}
	}
}
