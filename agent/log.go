package agent

import (
	"log/slog"
	"time"

	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
)

// logger holds the agent's log lines: constant messages, fixed keys, one
// type per key (step and steps are numbers, at names the step in words).
type logger struct{ l *slog.Logger }

// with is the logger of one reconcile: every line carries the revision
// and, once known, the plan id.
func (g logger) with(args ...any) logger { return logger{g.l.With(args...)} }

func (g logger) reconcileFailed(err error, retryIn time.Duration) {
	g.l.Error("Reconcile failed", "error", err, "retryIn", retryIn.String())
}
func (g logger) stepStarted(i, n int, s planner.Step) {
	g.l.Info("Step started", "step", i, "steps", n, "type", string(s.Type), "from", s.From, "to", s.To, "method", string(s.Method))
}
func (g logger) stepSucceeded(i, n int, s planner.Step, took time.Duration) {
	g.l.Info("Step succeeded", "step", i, "steps", n, "type", string(s.Type), "from", s.From, "to", s.To, "duration", took.Round(time.Millisecond).String())
}
func (g logger) stepProgress(where, msg string) {
	g.l.Info("Step progress", "at", where, "message", redact.Text(msg, redact.MaxMessage))
}
func (g logger) stalePlan(err error) {
	g.l.Info("Plan is stale, planning again", "reason", err.Error())
}
func (g logger) statusWritten(p Phase, reason string) {
	g.l.Info("Status committed", "phase", string(p), "reason", reason)
}
func (g logger) statusPushFailed(err error) { g.l.Warn("Status push failed", "error", err) }
func (g logger) memoryFailed(err error)     { g.l.Warn("Memory write failed", "error", err) }
func (g logger) memoryMigrated(from string) {
	g.l.Info("Memory migrated from the status file", "path", from)
}
func (g logger) catalogStale(err error) {
	g.l.Warn("Release catalog refresh failed, using the previous one", "error", err)
}
func (g logger) previousStatusIgnored(err error) {
	g.l.Warn("Previous status file ignored", "error", err)
}
func (g logger) driftDetected(msg string) {
	g.l.Warn("Drift detected", "message", redact.Text(msg, redact.MaxMessage))
}
