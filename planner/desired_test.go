package planner_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
)

const header = "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\n"

func TestParseDesiredDefaults(t *testing.T) {
	d, err := planner.ParseDesired([]byte(header + "spec:\n  version: v1.8.4\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d.State != planner.StatePresent || d.Method != planner.MethodAuto || d.PathPolicy != planner.PolicyStrict ||
		d.Approval != planner.ApprovalAutomatic || d.HopTimeout != 30*time.Minute || d.Window != nil || d.Suspend {
		t.Errorf("defaults: got %+v", d)
	}
}

func TestParseDesiredFull(t *testing.T) {
	in := header + `spec:
  state: Present
  version: ">= 1.7, < 1.9"
  method: ImageTag
  pathPolicy: LatestPatch
  approval: Manual
  approvedPlan: "3f9c1a2b"
  suspend: true
  hopTimeout: 45m
  maintenanceWindow:
    schedule: "0 2 * * 6"
    duration: 4h
    timeZone: Europe/Berlin
  teardown:
    removeStuckFinalizers: true
    allowWorkloadRemoval: false
`
	d, err := planner.ParseDesired([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != ">= 1.7, < 1.9" || d.Method != planner.MethodImageTag || d.PathPolicy != planner.PolicyLatestPatch ||
		d.Approval != planner.ApprovalManual || d.ApprovedPlan != "3f9c1a2b" || !d.Suspend || d.HopTimeout != 45*time.Minute ||
		d.Window == nil || d.Window.Duration != 4*time.Hour || d.Window.TimeZone != "Europe/Berlin" || !d.Teardown.RemoveStuckFinalizers {
		t.Errorf("got %+v", d)
	}
}

func TestParseDesiredAccepts(t *testing.T) {
	for name, in := range map[string]string{
		"a UTF-8 byte-order mark is dropped":   "\xEF\xBB\xBF" + header + "spec:\n  version: v1.8.4\n",
		"CRLF line endings":                    strings.ReplaceAll(header+"spec:\n  version: v1.8.4\n", "\n", "\r\n"),
		"comments":                             "# desired\n" + header + "spec: # here\n  version: v1.8.4 # pinned\n",
		"absent without a version":             header + "spec:\n  state: Absent\n",
		"a quoted version":                     header + "spec:\n  version: \"v1.8.4\"\n",
		"a pre-release named exactly":          header + "spec:\n  version: v1.9.0-rc.1\n",
		"a wildcard constraint":                header + "spec:\n  version: 1.8.x\n",
		"a caret constraint":                   header + "spec:\n  version: ^1.8\n",
		"flow mappings":                        header + "spec: {version: v1.8.4, suspend: false}\n",
		"an explicit document start":           "---\n" + header + "spec:\n  version: v1.8.4\n",
		"a daily window over the DST gap":      header + "spec:\n  version: v1.8.4\n  maintenanceWindow: {schedule: \"30 2 * * *\", duration: 1h, timeZone: Europe/Berlin}\n",
		"a manual plan waiting for approval":   header + "spec:\n  version: v1.8.4\n  approval: Manual\n",
		"a leap-day window (fires in 4 years)": header + "spec:\n  version: v1.8.4\n  maintenanceWindow: {schedule: \"0 0 29 2 *\", duration: 1h, timeZone: UTC}\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := planner.ParseDesired([]byte(in)); err != nil {
				t.Errorf("ParseDesired(%q): %v", in, err)
			}
		})
	}
}

func TestParseDesiredRejects(t *testing.T) {
	spec := func(s string) string { return header + "spec:\n" + s }
	tests := []struct {
		name  string
		in    string
		field string // the field the error must name ("" = the file)
		says  string // a fragment of the message
	}{
		// B4, B5, B13: structure
		{"duplicate key never lets the last one win", spec("  version: v1.2.0\n  version: v9.9.9\n"), "spec.version", "more than once"},
		{"unknown key", spec("  version: v1.8.4\n  mirrorr: x\n"), "spec.mirrorr", "not a known field"},
		{"misspelled nested key", spec("  version: v1.8.4\n  teardown:\n    allowWorkloadRemovel: true\n"), "spec.teardown.allowWorkloadRemovel", "not a known field"},
		{"second document", spec("  version: v1.8.4\n---\nspec: {}\n"), "", "more than one YAML document"},
		{"trailing empty document", spec("  version: v1.8.4\n---\n"), "", "more than one YAML document"},
		{"empty file", "", "", "is empty"},
		{"only comments", "# nothing\n", "", "is empty"},
		{"a list at the top", "- a\n", "", "mapping"},
		{"spec as a list", header + "spec:\n- version\n", "spec", "must be a mapping"},
		{"missing spec", header, "spec", "is required"},
		{"missing apiVersion", "kind: KubeVirtDesiredState\nspec:\n  version: v1.8.4\n", "apiVersion", "is required"},
		{"wrong apiVersion", "apiVersion: v1\nkind: KubeVirtDesiredState\nspec:\n  version: v1.8.4\n", "apiVersion", "must be kvgitops.dev/v1alpha1"},
		{"wrong kind", "apiVersion: kvgitops.dev/v1alpha1\nkind: ConfigMap\nspec:\n  version: v1.8.4\n", "kind", "must be KubeVirtDesiredState"},
		{"non-string key", header + "spec:\n  1: v1.8.4\n", "spec", "not a plain string"},
		// B3: YAML bombs
		{"alias bomb", header + "x: &a [1,1,1,1,1,1,1,1,1]\ny: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nz: [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nspec:\n  version: v1.8.4\n", "", "anchors or aliases"},
		{"merge key", header + "base: &b {version: v1.8.4}\nspec:\n  <<: *b\n", "", "anchors or aliases"},
		// B6: wrong types
		{"unquoted 1.10 is a float, never 1.1", spec("  version: 1.10\n"), "spec.version", "must be a string"},
		{"quoted 1.10 is not a tag", spec("  version: \"1.10\"\n"), "spec.version", "not a release tag"},
		{"no is a string that is not a version", spec("  version: no\n"), "spec.version", "valid semver constraint"},
		{"hex number", spec("  version: 0x1F\n"), "spec.version", "must be a string"},
		{"exponent", spec("  version: 1e3\n"), "spec.version", "must be a string"},
		{"null", spec("  version: null\n"), "spec.version", "must be a string"},
		{"tilde null", spec("  version: ~\n"), "spec.version", "must be a string"},
		{"a list", spec("  version: [v1.8.4]\n"), "spec.version", "must be a string"},
		{"a map", spec("  version: {tag: v1.8.4}\n"), "spec.version", "must be a string"},
		{"suspend as a string", spec("  version: v1.8.4\n  suspend: \"true\"\n"), "spec.suspend", "true or false"},
		{"suspend as yes", spec("  version: v1.8.4\n  suspend: yes\n"), "spec.suspend", "true or false"},
		{"custom tag", spec("  version: !evil v1.8.4\n"), "spec.version", "must be a string"},
		// B7, B42: versions
		{"missing patch", spec("  version: v1.2\n"), "spec.version", "not a release tag"},
		{"missing v", spec("  version: 1.2.3\n"), "spec.version", "not a release tag"},
		{"leading zero", spec("  version: v01.2.3\n"), "spec.version", "not a release tag"},
		{"capital V", spec("  version: V1.2.3\n"), "spec.version", "not a release tag"},
		{"build metadata", spec("  version: v1.2.3+evil\n"), "spec.version", "not a release tag"},
		{"whitespace inside quotes", spec("  version: \" v1.2.3\"\n"), "spec.version", "leading or trailing spaces"},
		{"NUL escape", spec("  version: \"v1.2.3\\u0000\"\n"), "spec.version", ""},
		{"shell substitution", spec("  version: \"$(reboot)\"\n"), "spec.version", "not a release tag"},
		{"semicolon", spec("  version: \"v1.2.3; rm -rf /\"\n"), "spec.version", ""},
		{"empty version", spec("  version: \"\"\n"), "spec.version", "must not be empty"},
		{"garbage constraint", spec("  version: \">>> 1\"\n"), "spec.version", "valid semver constraint"},
		{"missing version when present", spec("  state: Present\n"), "spec.version", "required"},
		{"version with absent", spec("  state: Absent\n  version: v1.8.4\n"), "spec.version", "must be omitted"},
		{"bad pre-release identifier", spec("  version: v1.8.0-rc.01\n"), "spec.version", "not a valid semantic version"},
		// enums
		{"state", spec("  state: Gone\n"), "spec.state", "one of Present, Absent"},
		{"method OperatorThenImageTag is a step method only", spec("  version: v1.8.4\n  method: OperatorThenImageTag\n"), "spec.method", "one of"},
		{"path policy case", spec("  version: v1.8.4\n  pathPolicy: strict\n"), "spec.pathPolicy", "one of"},
		{"approval", spec("  version: v1.8.4\n  approval: Later\n"), "spec.approval", "one of"},
		{"approved plan shape", spec("  version: v1.8.4\n  approval: Manual\n  approvedPlan: \"../../x\"\n"), "spec.approvedPlan", "not a plan id"},
		{"approved plan without manual approval", spec("  version: v1.8.4\n  approvedPlan: \"3f9c1a2b\"\n"), "spec.approvedPlan", "only meaningful"},
		// B39: durations and windows
		{"negative duration", spec("  version: v1.8.4\n  hopTimeout: -1s\n"), "spec.hopTimeout", "at least"},
		{"zero duration", spec("  version: v1.8.4\n  hopTimeout: \"0\"\n"), "spec.hopTimeout", "at least"},
		{"unitless duration", spec("  version: v1.8.4\n  hopTimeout: \"30\"\n"), "spec.hopTimeout", "not a duration"},
		{"overflowing duration", spec("  version: v1.8.4\n  hopTimeout: 9999999h\n"), "spec.hopTimeout", "not a duration"},
		{"absurd duration", spec("  version: v1.8.4\n  hopTimeout: 720h\n"), "spec.hopTimeout", "at most"},
		{"float duration", spec("  version: v1.8.4\n  hopTimeout: 1e308\n"), "spec.hopTimeout", "must be a string"},
		{"invalid cron", spec("  version: v1.8.4\n  maintenanceWindow: {schedule: \"61 * * * *\", duration: 1h, timeZone: UTC}\n"), "spec.maintenanceWindow.schedule", "5-field cron"},
		{"six-field cron", spec("  version: v1.8.4\n  maintenanceWindow: {schedule: \"0 0 2 * * 6\", duration: 1h, timeZone: UTC}\n"), "spec.maintenanceWindow.schedule", "5-field cron"},
		{"descriptor", spec("  version: v1.8.4\n  maintenanceWindow: {schedule: \"@every 1h\", duration: 1h, timeZone: UTC}\n"), "spec.maintenanceWindow.schedule", "5-field cron"},
		{"31 February never fires", spec("  version: v1.8.4\n  maintenanceWindow: {schedule: \"0 0 31 2 *\", duration: 1h, timeZone: UTC}\n"), "spec.maintenanceWindow.schedule", "never fires"},
		{"time zone in the schedule", spec("  version: v1.8.4\n  maintenanceWindow: {schedule: \"TZ=UTC 0 2 * * 6\", duration: 1h, timeZone: UTC}\n"), "spec.maintenanceWindow.schedule", "must not carry a time zone"},
		{"unknown time zone", spec("  version: v1.8.4\n  maintenanceWindow: {schedule: \"0 2 * * 6\", duration: 1h, timeZone: Mars/Olympus}\n"), "spec.maintenanceWindow.timeZone", "unknown IANA"},
		{"path in a time zone", spec("  version: v1.8.4\n  maintenanceWindow: {schedule: \"0 2 * * 6\", duration: 1h, timeZone: ../../etc/passwd}\n"), "spec.maintenanceWindow.timeZone", "not an IANA"},
		{"Local time zone", spec("  version: v1.8.4\n  maintenanceWindow: {schedule: \"0 2 * * 6\", duration: 1h, timeZone: Local}\n"), "spec.maintenanceWindow.timeZone", "not an IANA"},
		{"missing time zone", spec("  version: v1.8.4\n  maintenanceWindow: {schedule: \"0 2 * * 6\", duration: 1h}\n"), "spec.maintenanceWindow.timeZone", "is required"},
		{"window longer than a week", spec("  version: v1.8.4\n  maintenanceWindow: {schedule: \"0 2 * * 6\", duration: 200h, timeZone: UTC}\n"), "spec.maintenanceWindow.duration", "at most"},
		// B14: encodings
		{"UTF-16", "\xFF\xFEa\x00", "", "UTF-16"},
		{"invalid UTF-8", header + "spec:\n  version: \"v1.8.4\xff\"\n", "", "not valid UTF-8"},
		{"ANSI escape", header + "spec:\n  version: v1.8.4\x1b[31m\n", "", "control character"},
		{"raw NUL", header + "spec:\n  version: v1.8.4\x00\n", "", "control character"},
		{"bidi override", header + "spec:\n  version: v1.8.4 # \u202e\n", "", "invisible formatting"},
		// B2
		{"over the size cap", header + "spec:\n  version: v1.8.4\n#" + strings.Repeat("x", planner.MaxDesiredSize) + "\n", "", "over the 65536-byte limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := planner.ParseDesired([]byte(tt.in))
			var fe *planner.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("ParseDesired(%q) = %v, want a FieldError", tt.in, err)
			}
			if !errors.Is(err, planner.ErrInvalidDesired) || fault.ReasonOf(err) != planner.ReasonInvalidDesiredState {
				t.Errorf("error %v does not classify as an invalid desired state", err)
			}
			if fe.Field != tt.field {
				t.Errorf("ParseDesired(%q) names field %q, want %q (%v)", tt.in, fe.Field, tt.field, err)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error %q does not say %q", err, tt.says)
			}
			if strings.ContainsAny(err.Error(), "\x00\x1b\n") {
				t.Errorf("error %q carries raw control characters", err)
			}
		})
	}
}

func TestFieldErrorNamesValueAndLine(t *testing.T) {
	_, err := planner.ParseDesired([]byte(header + "spec:\n  version: v1.8.4\n  pathPolicy: Fastest\n"))
	want := `spec.pathPolicy (line 5): must be one of Strict, LatestPatch, got "Fastest"`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

func TestQuoteValueTruncates(t *testing.T) {
	got := redact.Quote(strings.Repeat("é", 100))
	if len(got) > 80 || !strings.HasSuffix(got, "…") {
		t.Errorf("QuoteValue of 100 runes = %q (%d bytes), want a truncated quote", got, len(got))
	}
}

func TestWorkloadPolicy(t *testing.T) {
	d := mustDesired(t, "  version: v1.8.4")
	if d.Workloads.Policy != planner.WorkloadsAuto || d.Workloads.Timeout != 0 || d.Workloads.ProgressTimeout != planner.DefaultWorkloadProgressTimeout ||
		d.Workloads.Unmovable != planner.UnmovableRefuse {
		t.Errorf("defaults %+v, want Auto, a sized timeout, a progress timeout of %s and Refuse", d.Workloads, planner.DefaultWorkloadProgressTimeout)
	}
	d = mustDesired(t, "  version: v1.8.4\n  workloads:\n    policy: Wait\n    timeout: 20m")
	if d.Workloads.Policy != planner.WorkloadsWait || d.Workloads.Timeout != 20*time.Minute {
		t.Errorf("parsed %+v", d.Workloads)
	}
	for spec, field := range map[string]string{
		"  version: v1.8.4\n  workloads:\n    policy: Later": "spec.workloads.policy",
		"  version: v1.8.4\n  workloads:\n    timeout: -1s":  "spec.workloads.timeout",
		"  version: v1.8.4\n  workloads:\n    polcy: Wait":   "polcy",
	} {
		_, err := planner.ParseDesired([]byte("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n" + spec))
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%q: %v, want an error naming %s", spec, err, field)
		}
	}
}
