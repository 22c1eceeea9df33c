package planner

import (
	"regexp"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"
)

// Window is a recurring maintenance window: it opens at each activation of a
// 5-field cron schedule, evaluated in TimeZone, and stays open for Duration.
type Window struct {
	Schedule string
	Duration time.Duration
	TimeZone string

	loc   *time.Location
	sched cron.Schedule
}

// cronParser accepts exactly the five standard fields: no seconds, no
// descriptors such as @every, no TZ= prefix (the time zone is its own field).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

var zoneName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$`)

// windowProbeStart is a fixed instant from which a schedule must fire at
// least once within cron's five-year search horizon; "0 0 31 2 *" never does.
var windowProbeStart = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func decodeWindow(n *yaml.Node) (*Window, error) {
	w := &Window{}
	var schedNode, zoneNode *yaml.Node
	f := fields{
		"schedule": func(v *yaml.Node) error {
			schedNode = v
			s, err := scalarString(v, "spec.maintenanceWindow.schedule")
			w.Schedule = s
			return err
		},
		"duration": func(v *yaml.Node) error {
			return duration(v, "spec.maintenanceWindow.duration", maxWindow, &w.Duration)
		},
		"timeZone": func(v *yaml.Node) error {
			zoneNode = v
			s, err := scalarString(v, "spec.maintenanceWindow.timeZone")
			w.TimeZone = s
			return err
		},
	}
	if err := f.decode("spec.maintenanceWindow", n, "schedule", "duration", "timeZone"); err != nil {
		return nil, err
	}
	if !zoneName.MatchString(w.TimeZone) || w.TimeZone == "Local" || strings.Contains(w.TimeZone, "..") || len(w.TimeZone) > 64 {
		return nil, fieldErr(zoneNode, "spec.maintenanceWindow.timeZone", w.TimeZone, "not an IANA time zone name (e.g. UTC, Europe/Berlin)")
	}
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil {
		return nil, fieldErr(zoneNode, "spec.maintenanceWindow.timeZone", w.TimeZone, "unknown IANA time zone")
	}
	w.loc = loc
	upper := strings.ToUpper(strings.TrimSpace(w.Schedule))
	if strings.HasPrefix(upper, "TZ=") || strings.HasPrefix(upper, "CRON_TZ=") {
		return nil, fieldErr(schedNode, "spec.maintenanceWindow.schedule", w.Schedule, "must not carry a time zone; use spec.maintenanceWindow.timeZone")
	}
	sched, err := cronParser.Parse(w.Schedule)
	if err != nil {
		return nil, fieldErr(schedNode, "spec.maintenanceWindow.schedule", w.Schedule, "not a 5-field cron schedule (minute hour day-of-month month day-of-week)")
	}
	if sched.Next(windowProbeStart.In(loc)).IsZero() {
		return nil, fieldErr(schedNode, "spec.maintenanceWindow.schedule", w.Schedule, "never fires (no such date)")
	}
	w.sched = sched
	return w, nil
}

// WindowState is where an instant falls relative to a maintenance window.
type WindowState struct {
	Open     bool
	ClosesAt time.Time // when Open: the end of the current window
	NextOpen time.Time // the next opening after the instant
}

// At evaluates the window at now. Overlapping activations merge: the window
// that opened last decides when it closes.
func (w *Window) At(now time.Time) WindowState {
	now = now.In(w.loc)
	var last time.Time
	t := w.sched.Next(now.Add(-w.Duration).Add(-time.Second))
	for !t.IsZero() && !t.After(now) {
		last = t
		t = w.sched.Next(t)
	}
	st := WindowState{NextOpen: t}
	if !last.IsZero() && now.Before(last.Add(w.Duration)) {
		st.Open = true
		st.ClosesAt = last.Add(w.Duration)
	}
	return st
}
