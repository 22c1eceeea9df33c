package agent

import (
	"net/http"
	"sync/atomic"
	"time"
)

// Health serves /healthz and /readyz. A standby (not leading) is healthy
// and ready; a leader is unhealthy when its loop has neither finished a
// pass nor, inside a step, looked again at what it waits for, for many
// intervals (wedged). A long hop or workload wait is no wedge: before, the
// kubelet killed an agent waiting minutes for its VMIs to migrate (seen on
// two real nodes).
type Health struct {
	agent   *Agent
	leading atomic.Bool
	started time.Time
	stall   time.Duration
}

// NewHealth watches a for wedging.
func NewHealth(a *Agent) *Health {
	return &Health{agent: a, started: time.Now(), stall: 10*a.cfg.Interval + a.cfg.MaxBackoff}
}

// SetLeading records whether this replica leads.
func (h *Health) SetLeading(v bool) { h.leading.Store(v) }

// Leading reports whether this replica leads.
func (h *Health) Leading() bool { return h.leading.Load() }

// Handler serves /healthz and /readyz.
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		last := h.agent.LastAlive()
		if h.leading.Load() && time.Since(h.started) > h.stall && time.Since(last) > h.stall {
			http.Error(w, "the reconcile loop has not turned for "+time.Since(last).Round(time.Second).String(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
