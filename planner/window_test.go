package planner_test

import (
	"testing"
	"time"
)

func TestWindowAt(t *testing.T) {
	d := mustDesired(t, "  version: v1.8.4\n  maintenanceWindow: {schedule: \"0 2 * * 6\", duration: 4h, timeZone: Europe/Berlin}\n")
	berlin, _ := time.LoadLocation("Europe/Berlin")
	sat := func(h, m int) time.Time { return time.Date(2026, 11, 28, h, m, 0, 0, berlin) } // a Saturday
	tests := []struct {
		name     string
		now      time.Time
		open     bool
		closes   time.Time
		nextOpen time.Time
	}{
		{"before the window", sat(1, 59), false, time.Time{}, sat(2, 0)},
		{"at the opening", sat(2, 0), true, sat(6, 0), sat(2, 0).AddDate(0, 0, 7)},
		{"inside", sat(5, 30), true, sat(6, 0), sat(2, 0).AddDate(0, 0, 7)},
		{"at the closing", sat(6, 0), false, time.Time{}, sat(2, 0).AddDate(0, 0, 7)},
		{"evaluated from another zone", sat(3, 0).UTC(), true, sat(6, 0), sat(2, 0).AddDate(0, 0, 7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := d.Window.At(tt.now)
			if st.Open != tt.open || !st.ClosesAt.Equal(tt.closes) || !st.NextOpen.Equal(tt.nextOpen) {
				t.Errorf("At(%s) = %+v, want open=%t closes=%s next=%s", tt.now, st, tt.open, tt.closes, tt.nextOpen)
			}
		})
	}
}

func TestWindowSkipsTheDSTGap(t *testing.T) {
	// 02:30 does not exist in Berlin on 2027-03-28; the window opens the next day.
	d := mustDesired(t, "  version: v1.8.4\n  maintenanceWindow: {schedule: \"30 2 * * *\", duration: 1h, timeZone: Europe/Berlin}\n")
	berlin, _ := time.LoadLocation("Europe/Berlin")
	st := d.Window.At(time.Date(2027, 3, 28, 1, 0, 0, 0, berlin))
	if st.Open || st.NextOpen.Day() != 29 {
		t.Errorf("At(before the gap) = %+v, want closed and next opening on the 29th", st)
	}
}
