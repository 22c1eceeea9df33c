package agent_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/planner"
)

// TestDriftIsReported: an imageTag set by hand after kvgitops finished is
// named in the status (what differs from what kvgitops applied), once as
// an Event, and nothing is planned while spec.drift is Report.
func TestDriftIsReported(t *testing.T) {
	w := newWorld(t, "  version: v1.8.4\n", "v1.8.4")
	if st, err := w.settle(); err != nil || st.Reason != "UpToDate" || st.Applied == nil || st.Applied.Version != "v1.8.4" {
		t.Fatalf("settle: %v, status %+v", err, st)
	}
	w.cluster.imageTag = "v1.8.9-hotfix"
	for range 3 {
		w.clock.add(2 * 60e9)
		if _, err := w.settle(); err != nil {
			t.Fatal(err)
		}
	}
	st := w.status()
	if st.Phase != agent.PhaseRefused || st.Reason != "DriftDetected" || !strings.Contains(st.Message, `spec.imageTag "v1.8.9-hotfix" (kvgitops left unset)`) {
		t.Errorf("status %s %s %q", st.Phase, st.Reason, st.Message)
	}
	if len(st.Drift) != 1 || st.Drift[0].Field != "spec.imageTag" || st.Drift[0].Observed != "v1.8.9-hotfix" {
		t.Errorf("drift %+v", st.Drift)
	}
	if n := count(w.cluster.events, "DriftDetected"); n != 1 {
		t.Errorf("%d DriftDetected events, want one", n)
	}
	if w.cluster.restored != 0 || len(w.cluster.ran) != 0 {
		t.Errorf("Report mode wrote: %d restores, steps %v", w.cluster.restored, w.cluster.steps())
	}

	// A new desired content is a new decision: the drift is not held
	// against it.
	w.desire("  version: v1.8.4\n  drift: Report\n")
	if st, _ := w.settle(); st.Reason != "UpToDate" || len(st.Drift) != 0 {
		t.Errorf("after a new commit: %s %s drift %+v", st.Phase, st.Reason, st.Drift)
	}
}

// TestDriftIsCorrected: with spec.drift Correct a hand-set imageTag the
// operator has not acted on is put back; one the operator already runs is
// planned from, and a downgrade is never the correction.
func TestDriftIsCorrected(t *testing.T) {
	w := newWorld(t, "  version: v1.7.4\n  drift: Correct\n", "v1.7.4")
	if _, err := w.settle(); err != nil {
		t.Fatal(err)
	}
	w.cluster.imageTag = "v1.7.9"
	st, err := w.settle()
	if err != nil {
		t.Fatal(err)
	}
	if w.cluster.restored != 1 || w.cluster.imageTag != "" || st.Reason != "UpToDate" {
		t.Errorf("restored %d, imageTag %q, status %s %s", w.cluster.restored, w.cluster.imageTag, st.Phase, st.Reason)
	}
	if !slices.Contains(w.cluster.events, "DriftCorrected") {
		t.Errorf("events %v", w.cluster.events)
	}

	// By hand to the next minor, already rolled out: kvgitops does not
	// downgrade it back.
	w.cluster.imageTag, w.cluster.installed, w.cluster.mode = "v1.8.4", "v1.8.4", "ImageTag"
	st, err = w.settle()
	if err == nil && st.Phase != agent.PhaseRefused {
		t.Fatalf("status %s %s", st.Phase, st.Reason)
	}
	if st.Reason != "DowngradeNotSupported" || w.cluster.installed != "v1.8.4" || len(w.cluster.ran) != 0 {
		t.Errorf("status %s %q; installed %s, steps %v", st.Reason, st.Message, w.cluster.installed, w.cluster.steps())
	}
	if len(st.Drift) == 0 {
		t.Errorf("the refusal does not show the drift")
	}
}

// TestTheRepositoryRisksFile: the risks file beside the desired file adds
// risks; a blocking one refuses the hop before anything runs, naming it;
// accepting it by id lets the hop run; a malformed file is Invalid naming
// the file and field, and nothing is applied.
func TestTheRepositoryRisksFile(t *testing.T) {
	w := newWorld(t, "  version: v1.7.4\n", "v1.7.4")
	m := agent.NewMetrics()
	w.agent = agent.New(agent.Config{ClusterName: "prod-east", Clock: w.clock.now, Metrics: m, Memory: w.memory}, w.repo, w.cluster, realCatalog)
	if _, err := w.settle(); err != nil {
		t.Fatal(err)
	}
	risks := "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtUpgradeRisks\nrisks:\n- id: ACME-12\n  from: {min: v1.7.0}\n  to: {tags: [v1.8.4]}\n  severity: Blocks\n  summary: our CSI driver breaks on 1.8.4\n  url: https://wiki.example.com/acme-12\n"
	w.repo.commit(map[string]string{"kubevirt.yaml": header + "  version: v1.8.4\n", "kubevirt-risks.yaml": risks})
	st, _ := w.settle()
	if st.Phase != agent.PhaseRefused || st.Reason != "KnownRisk" || !strings.Contains(st.Message, "ACME-12") || !strings.Contains(st.Message, "https://wiki.example.com/acme-12") {
		t.Errorf("status %s %s %q", st.Phase, st.Reason, st.Message)
	}
	if !slices.ContainsFunc(st.Preflight, func(c planner.Check) bool { return c.Name == "KnownRisk/ACME-12" && c.Result == planner.CheckRefuse }) {
		t.Errorf("preflight %+v", st.Preflight)
	}
	if len(w.cluster.ran) != 0 {
		t.Fatalf("a refused hop ran: %v", w.cluster.steps())
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{`kvgitops_preflight_checks{check="KnownRisk",result="Refuse"} 1`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	w.repo.commit(map[string]string{"kubevirt.yaml": header + "  version: v1.8.4\n  acceptRisks: [ACME-12]\n"})
	st, err := w.settle()
	if err != nil || st.Phase != agent.PhaseSucceeded || w.cluster.installed != "v1.8.4" {
		t.Fatalf("accepted: %v %s %s %q", err, st.Phase, st.Reason, st.Message)
	}
	if st.Plan == nil || !slices.ContainsFunc(st.Plan.Checks, func(c planner.Check) bool {
		return c.Name == "KnownRisk/ACME-12" && c.Result == planner.CheckPass && strings.Contains(c.Message, "accepted")
	}) {
		t.Errorf("the plan does not record the accepted risk: %+v", st.Plan)
	}

	w.repo.commit(map[string]string{"kubevirt-risks.yaml": strings.Replace(risks, "severity: Blocks", "severity: Bad", 1)})
	st, _ = w.settle()
	if st.Phase != agent.PhaseInvalid || !strings.Contains(st.Message, "kubevirt-risks.yaml") || !strings.Contains(st.Message, "risks[0].severity") || !strings.Contains(st.Message, "Bad") {
		t.Errorf("status %s %s %q", st.Phase, st.Reason, st.Message)
	}
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// brokenMemory reads as empty and refuses every write, as when the agent's
// namespace is missing.
type brokenMemory struct{}

func (brokenMemory) Load(context.Context) ([]byte, error) { return nil, nil }
func (brokenMemory) Save(context.Context, []byte) error {
	return errors.New(`namespaces "kvgitops" not found`)
}

// TestNoStepWithoutTheJournal: a step whose intent cannot be recorded does
// not start; the status says why, in the same bytes on every retry (one
// commit, not one per back-off).
func TestNoStepWithoutTheJournal(t *testing.T) {
	w := newWorld(t, "  version: v1.8.4\n", "v1.7.4")
	w.agent = agent.New(agent.Config{ClusterName: "prod-east", Clock: w.clock.now, Memory: brokenMemory{}}, w.repo, w.cluster, realCatalog)
	for range 4 {
		if _, err := w.agent.Reconcile(context.Background()); err == nil {
			t.Fatal("a step started without its intent recorded")
		}
		w.clock.add(time.Minute)
	}
	st := w.status()
	if st.Reason != "JournalUnavailable" || !strings.Contains(st.Message, "not found") {
		t.Errorf("status %s %q", st.Reason, st.Message)
	}
	if len(w.cluster.ran) != 0 {
		t.Errorf("steps ran: %v", w.cluster.steps())
	}
	if n := len(w.repo.writes); n != 1 {
		t.Errorf("%d status commits over 4 failed passes, want 1: %v", n, w.repo.writes)
	}
}

// pushFails makes every status push fail, as a Git host refusing writes for
// days would.
func (w *world) pushFails(fail bool) {
	w.repo.mu.Lock()
	defer w.repo.mu.Unlock()
	w.repo.writeErr = nil
	if fail {
		w.repo.writeErr = &fault.Error{Reason: gitsource.ReasonStatusPushFailing, Message: "the remote hung up"}
	}
}

// remembered is the agent's memory as the cluster holds it.
func (w *world) remembered() agent.Memory {
	w.t.Helper()
	m, err := agent.ParseMemory([]byte(w.memory.String()))
	if err != nil {
		w.t.Fatalf("the memory does not parse: %v", err)
	}
	return m
}

// TestEveryAttemptIsEventuallyPublished: while status pushes fail, every
// attempt stays in the agent's memory; once they work, the status file
// publishes them all, fifty per commit, oldest first, and the memory lets
// go of each one only after a pushed status held it.
func TestEveryAttemptIsEventuallyPublished(t *testing.T) {
	w := newWorld(t, "  version: v1.8.4\n", "v1.7.4")
	w.pushFails(true)
	for range 120 {
		w.cluster.failNext = &fault.Error{Reason: executor.ReasonAPIUnavailable, Message: "the apiserver is busy"}
		if _, err := w.agent.Reconcile(context.Background()); err == nil {
			t.Fatal("a failing step reported no error")
		}
		w.clock.add(time.Minute)
	}
	m := w.remembered()
	if len(m.Journal) != 120 {
		t.Fatalf("%d attempts wait in the memory, want 120", len(m.Journal))
	}
	want := map[string]bool{}
	for _, e := range m.Journal {
		want[e.ID] = true
	}
	w.pushFails(false)
	if _, err := w.settle(); err != nil {
		t.Fatal(err)
	}
	for range 5 { // the last pushes drain the backlog
		if _, err := w.agent.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	published := map[string]bool{}
	w.repo.mu.Lock()
	for _, c := range w.repo.commits {
		if st, err := agent.ParseStatus(c["status/prod-east.yaml"]); err == nil {
			for _, e := range st.Journal {
				if e.State != agent.StepRunning {
					published[e.ID] = true
				}
			}
		}
	}
	w.repo.mu.Unlock()
	for id := range want {
		if !published[id] {
			t.Errorf("attempt %s was never published in a status commit", id)
		}
	}
	if m := w.remembered(); len(m.Journal) != 0 || len(m.Published) != 50 {
		t.Errorf("after the backlog: %d attempts unpublished, %d kept as published; want 0 and 50", len(m.Journal), len(m.Published))
	}
}

// TestNoStepWhileTheJournalIsFull: a push outage long enough to fill the
// journal stops the agent acting before its memory nears the ConfigMap
// limit, and says so; the memory stays bounded.
func TestNoStepWhileTheJournalIsFull(t *testing.T) {
	w := newWorld(t, "  version: v1.8.4\n", "v1.7.4")
	w.pushFails(true)
	long := strings.Repeat("the apiserver answered 503 Service Unavailable; ", 20)
	for i := 0; ; i++ {
		w.cluster.failNext = &fault.Error{Reason: executor.ReasonAPIUnavailable, Message: long}
		ran := len(w.cluster.ran)
		_, err := w.agent.Reconcile(context.Background())
		w.clock.add(time.Minute)
		if len(w.cluster.ran) == ran {
			if s := w.agent.Snapshot(); s.Reason != "JournalFull" || !strings.Contains(s.Message, "are not yet published in the status file") {
				t.Fatalf("after %d attempts no step ran: %s %q (%v)", i, s.Reason, s.Message, err)
			}
			if i != 500 {
				t.Errorf("the agent stopped after %d attempts, want 500", i)
			}
			break
		}
		if i > 600 {
			t.Fatal("the journal never filled")
		}
	}
	if n := len(w.memory.String()); n > 768<<10 {
		t.Errorf("the memory is %d bytes, over its 768 KiB bound", n)
	}
	w.cluster.failNext = nil
	ran := len(w.cluster.ran)
	w.agent.Reconcile(context.Background())
	if len(w.cluster.ran) != ran {
		t.Error("a step ran with the journal full")
	}
}
