// Package agent is the reconcile loop of kvgitops.
//
// On every trigger (the interval with jitter, a signed webhook, a
// maintenance window opening, the end of a hop) it polls Git cheaply, reads
// and parses the desired file when the revision changed, observes the
// cluster, computes the plan, passes the gates (suspend, maintenance window,
// manual approval), runs at most one step, renders the status file and
// commits it when its bytes changed. It is level-triggered: after a restart
// it derives what to do from Git, the cluster and its memory in the
// cluster (anchors, what it applied, the plan a hop belongs to, the
// journal), re-verifying the plan by recomputing it.
//
// It owns two small interfaces it consumes, Repo (Git) and Cluster, plus a
// function for the release catalog. It owns the agent's memory (kept in
// the cluster), the status model and its deterministic rendering, the
// Prometheus metrics, the webhook receiver and the health endpoints. Only
// the top of a reconcile logs an error.
//
// It must not import client-go, Kubernetes' API types or go-git, and must
// not read the status file back to decide anything (it is output only).
package agent
