package agent_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kvgitops/kvgitops/agent"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sampleStatus() agent.Status {
	at := func(m int) *agent.Timestamp {
		t := agent.NewTimestamp(time.Date(2026, 11, 28, 2, m, 0, 0, time.UTC))
		return &t
	}
	return agent.Status{
		APIVersion:      agent.StatusAPIVersion,
		Kind:            agent.StatusKind,
		Cluster:         "prod-east",
		DesiredRevision: "main@sha1:1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
		Desired:         &agent.DesiredSummary{State: "Present", Version: "~1.8", Resolved: "v1.8.4", Digest: "0123456789abcdef"},
		Observed:        agent.ObservedSummary{Version: "v1.7.4", OperatorVersion: "v1.7.4", Mode: "Locked", Available: true, Kubernetes: "v1.37.2"},
		Phase:           agent.PhaseProgressing,
		Reason:          "HopInProgress",
		Message:         "step 2/2 Upgrade v1.7.4 -> v1.8.4 (Operator): starting",
		Plan: &agent.PlanStatus{ID: "3f9c1a2b", Action: "Upgrade", From: "v1.6.6", To: "v1.8.4",
			Origin: &agent.PlanOrigin{Installed: "v1.6.6", Mode: "Locked", OperatorVersion: "v1.6.6", KubeVirt: true, OperatorPresent: true},
			Steps: []agent.StepStatus{
				{Type: "Upgrade", From: "v1.6.6", To: "v1.7.4", Method: "Operator", State: "Succeeded", StartedAt: at(0), FinishedAt: at(7),
					Notes: []string{"applied kubevirt-operator.yaml of v1.7.4 (sha256 4da7b371)"}},
				{Type: "Upgrade", From: "v1.7.4", To: "v1.8.4", Method: "Operator", State: "Running", StartedAt: at(7)},
			}},
		Workloads: &agent.Workloads{RunningBefore: 12, RunningNow: 12, Moved: 10, Moving: agent.NamedCount{Count: 1, Names: []string{"default/db-0"}},
			CannotMove: agent.NamedCount{Count: 1, Names: []string{"default/gpu-0"}}},
		Conditions: []agent.Condition{
			{Type: "Ready", Status: "False", Reason: "HopInProgress", Message: "step 2/2", LastTransitionTime: *at(0)},
			{Type: "Reconciling", Status: "True", Reason: "HopInProgress", LastTransitionTime: *at(0)},
			{Type: "Stalled", Status: "False", Reason: "HopInProgress", LastTransitionTime: *at(0)},
		},
		History: []agent.Run{{PlanID: "9e8d7c6b", Action: "Install", To: "v1.6.6", Result: "Succeeded", Steps: 1, StartedAt: *at(0), FinishedAt: *at(3)}},
	}
}

func TestStatusGolden(t *testing.T) {
	got, err := agent.Render(sampleStatus())
	if err != nil {
		t.Fatal(err)
	}
	again, _ := agent.Render(sampleStatus())
	if !bytes.Equal(got, again) {
		t.Fatal("rendering the same status twice gave different bytes")
	}
	golden := filepath.Join("testdata", "status.golden.yaml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("status differs from %s (-want +got):\n%s", golden, diff)
	}
	back, err := agent.ParseStatus(got)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sampleStatus(), back, cmpTimestamps); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestStatusCannotBeInjected(t *testing.T) {
	s := sampleStatus()
	s.Message = "boom\n---\nkind: Secret\n\x1b[31mred\x1b[0m " + strings.Repeat("x", 5000)
	s.Plan.Steps[1].Message = "line\nbreak: true"
	out, err := agent.Render(s)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("\n---")) || bytes.Contains(out, []byte("\x1b")) || bytes.Contains(out, []byte("\nbreak: true")) {
		t.Errorf("injected text changed the file's structure:\n%s", out)
	}
	back, err := agent.ParseStatus(out)
	if err != nil || len(back.Message) > 600 {
		t.Errorf("parse back: %v, message %d bytes", err, len(back.Message))
	}
}

var cmpTimestamps = cmp.Comparer(func(a, b agent.Timestamp) bool { return a.Equal(b.Time) })

// FuzzStatusRoundTrip: any accepted status file renders back to a file that
// parses to the same status, and rendering is stable.
func FuzzStatusRoundTrip(f *testing.F) {
	golden, _ := agent.Render(sampleStatus())
	f.Add(golden)
	f.Add([]byte("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtStatus\ncluster: c\nobserved: {available: false}\nphase: Idle\nconditions: []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := agent.ParseStatus(data)
		if err != nil {
			return
		}
		out, err := agent.Render(s)
		if err != nil {
			t.Fatalf("render of a parsed status: %v", err)
		}
		s2, err := agent.ParseStatus(out)
		if err != nil {
			t.Fatalf("rendered status does not parse: %v\n%s", err, out)
		}
		out2, err := agent.Render(s2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("render is not stable:\n%s\n---\n%s", out, out2)
		}
	})
}
