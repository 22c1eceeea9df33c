package agent

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/planner"
)

// Metrics are the agent's Prometheus metrics, all prefixed kvgitops_.
type Metrics struct {
	reg            *prometheus.Registry
	names          []string
	reconcile      *prometheus.HistogramVec
	hopDuration    *prometheus.HistogramVec
	planHops       prometheus.Gauge
	currentVersion *prometheus.GaugeVec
	desiredVersion *prometheus.GaugeVec
	gitOps         *prometheus.CounterVec
	lastSuccess    prometheus.Gauge
	suspended      prometheus.Gauge
	disrupted      prometheus.Counter
	phaseInfo      *prometheus.GaugeVec
	reasonInfo     *prometheus.GaugeVec
	pushFailures   prometheus.Counter
	outdatedVMIs   prometheus.Gauge
	checks         *prometheus.GaugeVec
	forecastVMIs   *prometheus.GaugeVec
	kubeRequests   *prometheus.CounterVec
}

// NewMetrics registers the metrics on a registry of their own (plus the Go
// and process collectors).
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	// named records a metric's name for Names.
	named := func(name string) string { m.names = append(m.names, name); return name }
	m.reconcile = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: named("kvgitops_reconcile_duration_seconds"), Help: "Duration of one reconcile pass.", Buckets: prometheus.ExponentialBuckets(0.005, 4, 10)}, []string{"result"})
	m.hopDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: named("kvgitops_hop_duration_seconds"), Help: "Duration of one plan step.", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}, []string{"type", "result"})
	m.planHops = prometheus.NewGauge(prometheus.GaugeOpts{Name: named("kvgitops_plan_hops"), Help: "Steps in the current plan."})
	m.currentVersion = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: named("kvgitops_current_version_info"), Help: "The installed KubeVirt version (1 for the current one)."}, []string{"version"})
	m.desiredVersion = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: named("kvgitops_desired_version_info"), Help: "The resolved desired KubeVirt version."}, []string{"version"})
	m.gitOps = prometheus.NewCounterVec(prometheus.CounterOpts{Name: named("kvgitops_git_operations_total"), Help: "Git operations by kind and result."}, []string{"operation", "result"})
	m.lastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{Name: named("kvgitops_last_success_timestamp_seconds"), Help: "When a reconcile last succeeded."})
	m.suspended = prometheus.NewGauge(prometheus.GaugeOpts{Name: named("kvgitops_suspended"), Help: "1 while spec.suspend is true."})
	m.disrupted = prometheus.NewCounter(prometheus.CounterOpts{Name: named("kvgitops_vmi_disruptions_total"), Help: "VMIs disrupted during hops."})
	m.phaseInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: named("kvgitops_phase"), Help: "The status phase (1 for the current one)."}, []string{"phase"})
	m.reasonInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: named("kvgitops_reason"), Help: "The status file's reason, with its phase (1 for the current one)."}, []string{"phase", "reason"})
	m.pushFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: named("kvgitops_status_push_failures_total"), Help: "Status commits that could not be pushed."})
	m.outdatedVMIs = prometheus.NewGauge(prometheus.GaugeOpts{Name: named("kvgitops_outdated_vmis"), Help: "VMIs running a virt-launcher older than the installed KubeVirt."})
	m.forecastVMIs = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: named("kvgitops_workload_forecast_vmis"), Help: "What the plan's next hop does to the running VMIs, by fate (LiveMigrate, Restart, ShutDown, StaysOutdated)."}, []string{"fate"})
	m.kubeRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: named("kvgitops_kube_requests_total"), Help: "Requests to the Kubernetes API server, by HTTP method."}, []string{"method"})
	m.checks = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: named("kvgitops_preflight_checks"), Help: "Preflight checks of the current plan that warn or refuse, by check."}, []string{"check", "result"})
	m.reg.MustRegister(m.reconcile, m.hopDuration, m.planHops, m.currentVersion, m.desiredVersion, m.gitOps,
		m.lastSuccess, m.suspended, m.disrupted, m.phaseInfo, m.reasonInfo, m.pushFailures, m.outdatedVMIs, m.checks, m.forecastVMIs, m.kubeRequests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Names are the names of kvgitops's own metrics (not Go's or the
// process's), as dashboards and alert rules may use them.
func (m *Metrics) Names() []string { return slices.Clone(m.names) }

// CountRequests wraps a client transport to count its requests
// (kvgitops_kube_requests_total): what one pass costs the API server.
func (m *Metrics) CountRequests(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		m.kubeRequests.WithLabelValues(r.Method).Inc()
		return rt.RoundTrip(r)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Gather exposes the registry to tests.
func (m *Metrics) Gather() prometheus.Gatherer { return m.reg }

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "success"
}

func (m *Metrics) observeReconcile(d time.Duration, err error) {
	m.reconcile.WithLabelValues(result(err)).Observe(d.Seconds())
	if err == nil {
		m.lastSuccess.SetToCurrentTime()
	}
}

func (m *Metrics) gitOp(op string, err error) { m.gitOps.WithLabelValues(op, result(err)).Inc() }

func (m *Metrics) hop(s planner.Step, res string, d time.Duration) {
	m.hopDuration.WithLabelValues(string(s.Type), res).Observe(d.Seconds())
}

// preflight counts the warnings and refusals of the current plan by check
// (KnownRisk/KV-16386 counts as KnownRisk).
func (m *Metrics) preflight(checks []planner.Check) {
	m.checks.Reset()
	for _, c := range checks {
		if c.Result == planner.CheckWarn || c.Result == planner.CheckRefuse {
			name, _, _ := strings.Cut(c.Name, "/")
			m.checks.WithLabelValues(name, string(c.Result)).Inc()
		}
	}
}

func (m *Metrics) plan(p planner.Plan) {
	m.preflight(p.Checks)
	m.planHops.Set(float64(len(p.Steps)))
	m.desiredVersion.Reset()
	if p.To != "" {
		m.desiredVersion.WithLabelValues(p.To).Set(1)
	}
}

func (m *Metrics) observed(o *executor.Observation) {
	m.currentVersion.Reset()
	if o.Installed != "" {
		m.currentVersion.WithLabelValues(o.Installed).Set(1)
	}
	if n := o.OutdatedCount(); n >= 0 {
		m.outdatedVMIs.Set(float64(n))
	}
}

func (m *Metrics) setOutdated(n int) { m.outdatedVMIs.Set(float64(n)) }

func (m *Metrics) forecast(f planner.WorkloadForecast) {
	for _, fate := range []planner.Fate{planner.FateLiveMigrate, planner.FateRestart, planner.FateShutDown, planner.FateStays} {
		m.forecastVMIs.WithLabelValues(string(fate)).Set(float64(f.Counts[fate]))
	}
}

func (m *Metrics) setSuspended(s bool) {
	if s {
		m.suspended.Set(1)
	} else {
		m.suspended.Set(0)
	}
}

func (m *Metrics) disruptions(n int) { m.disrupted.Add(float64(n)) }

func (m *Metrics) phase(p Phase, reason string) {
	m.phaseInfo.Reset()
	m.phaseInfo.WithLabelValues(string(p)).Set(1)
	m.reasonInfo.Reset()
	m.reasonInfo.WithLabelValues(string(p), reason).Set(1)
}

func (m *Metrics) statusPushFailed() { m.pushFailures.Inc() }
