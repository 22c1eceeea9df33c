// Package planner is the pure core of kvgitops.
//
// It owns the desired-file schema and its strict parser ([ParseDesired]), the
// release catalog ([Catalog]), and the planning rules of KubeVirt's supported
// update path ([Compute]): N-1 → N hops only, never a skipped minor, never a
// downgrade, nothing older than the v0.17 line, and teardown in the
// documented order.
//
// It must not do I/O, log, read a clock or keep package state: callers pass
// bytes in and get values out, and time enters only as an argument (see
// [Window.At]). It imports neither go-git nor client-go. Everything here is
// deterministic, so the same inputs always give the same [Plan] and plan id.
// The one lookup of static data is [time.LoadLocation] for the maintenance
// window's time zone; the binary embeds the zone database.
package planner
