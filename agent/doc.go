// Package agent is the reconcile loop of kvgitops.
//
// On every trigger (the interval with jitter, a signed webhook, a
// maintenance window opening, the end of a hop) it polls Git cheaply, reads
// and parses the desired file when the revision changed, observes the
// cluster, computes the plan, passes the gates (suspend, maintenance window,
// manual approval), runs at most one step, renders the status file and
// commits it when its bytes changed. It is level-triggered: after a restart
// it derives what to do from Git and the cluster; the previous status file
// is read only for display continuity (history, the plan a hop belongs to)
// and every use of it is re-verified by recomputing the plan.
//
// It owns two small interfaces it consumes, Repo (Git) and Cluster, plus a
// function for the release catalog; it imports no client-go and no go-git
// directly. It owns the status model and its deterministic rendering, the
// Prometheus metrics, the webhook receiver and the health endpoints. Only
// the top of a reconcile logs an error.
package agent
