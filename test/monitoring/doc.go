// Package monitoring tests deploy/components/monitoring: its alert rules
// with Prometheus's own promtool (check and unit tests), and that the
// rules and the Grafana dashboard name only metrics the agent exports.
package monitoring
