package agent_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
)

func TestInstallThenUpgradeHopByHop(t *testing.T) {
	w := newWorld(t, "  version: v1.6.6\n", "")
	st, err := w.settle()
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != agent.PhaseSucceeded || st.Observed.Version != "v1.6.6" || w.cluster.installed != "v1.6.6" {
		t.Fatalf("after install: phase %s observed %s", st.Phase, st.Observed.Version)
	}
	w.desire("  version: \"~1.8\"\n")
	st, err = w.settle()
	if err != nil {
		t.Fatal(err)
	}
	if got := w.cluster.steps(); !slices.Equal(got, []string{"v1.6.6", "v1.7.4", "v1.8.4"}) {
		t.Errorf("steps run %v", got)
	}
	if st.Phase != agent.PhaseSucceeded || st.Desired.Resolved != "v1.8.4" || len(st.History) != 2 {
		t.Errorf("status %s, resolved %s, %d runs in history", st.Phase, st.Desired.Resolved, len(st.History))
	}
	if h := st.History[0]; h.Result != "Succeeded" || h.From != "v1.6.6" || h.To != "v1.8.4" || h.Steps != 2 {
		t.Errorf("newest run %+v", h)
	}
	if st.Workloads == nil || st.Workloads.RunningBefore != 2 {
		t.Errorf("workloads %+v", st.Workloads)
	}
	// The finished plan stays in the status file with every step's outcome.
	if stepStates(st) != "v1.7.4:Succeeded v1.8.4:Succeeded" {
		t.Errorf("finished plan steps %s", stepStates(st))
	}
	if !slices.Contains(w.cluster.events, "StepStarted") || !slices.Contains(w.cluster.events, "StepSucceeded") {
		t.Errorf("events %v", w.cluster.events)
	}
}

func TestSteadyStateMakesNoCommits(t *testing.T) {
	w := newWorld(t, "  version: v1.8.4\n", "v1.8.4")
	if _, err := w.settle(); err != nil {
		t.Fatal(err)
	}
	before := len(w.repo.writes)
	for i := 0; i < 5; i++ {
		w.clock.add(time.Minute)
		if _, err := w.settle(); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.repo.writes) != before {
		t.Errorf("%d status commits in a steady state: %v", len(w.repo.writes)-before, w.repo.writes[before:])
	}
	// The agent's own status commits move the head; the desired revision
	// stays the commit that set the desired bytes.
	if st := w.status(); st.DesiredRevision != w.repo.rev(0) {
		t.Errorf("desiredRevision %s, want the desired file's commit %s", st.DesiredRevision, w.repo.rev(0))
	}
	// A fresh agent (a restart) renders the same bytes: still no commit.
	w.agent = w.newAgent()
	if _, err := w.settle(); err != nil {
		t.Fatal(err)
	}
	if len(w.repo.writes) != before {
		t.Errorf("a restart in a steady state committed: %v", w.repo.writes[before:])
	}
}

func TestInvalidDesiredFileAppliesNothing(t *testing.T) {
	w := newWorld(t, "  version: v1.6.6\n", "v1.6.6")
	if _, err := w.settle(); err != nil {
		t.Fatal(err)
	}
	w.desire("  version: 1.10\n")
	st, err := w.settle()
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != agent.PhaseInvalid || st.Reason != "InvalidDesiredState" || !strings.Contains(st.Message, "spec.version") {
		t.Errorf("invalid desired: %s %s %q", st.Phase, st.Reason, st.Message)
	}
	if len(w.cluster.ran) != 0 {
		t.Errorf("steps ran for an invalid desired file: %v", w.cluster.steps())
	}
	if c := cond(st, "Stalled"); c.Status != "True" {
		t.Errorf("Stalled = %+v", c)
	}
	// The next valid commit proceeds.
	w.desire("  version: v1.7.4\n")
	if st, _ = w.settle(); st.Phase != agent.PhaseSucceeded || w.cluster.installed != "v1.7.4" {
		t.Errorf("after a valid commit: %s, installed %s", st.Phase, w.cluster.installed)
	}
}

func TestMissingDesiredFileIsNotUninstall(t *testing.T) {
	w := newWorld(t, "  version: v1.6.6\n", "v1.6.6")
	w.repo.commits[0] = map[string][]byte{"README.md": []byte("x")}
	st, _ := w.settle()
	if st.Phase != agent.PhaseInvalid || st.Reason != "DesiredFileMissing" || len(w.cluster.ran) != 0 {
		t.Errorf("missing desired file: %s %s, steps %v", st.Phase, st.Reason, w.cluster.steps())
	}
}

func TestSuspend(t *testing.T) {
	w := newWorld(t, "  version: v1.8.4\n  suspend: true\n", "v1.6.6")
	st, _ := w.settle()
	if st.Phase != agent.PhaseSuspended || len(w.cluster.ran) != 0 {
		t.Fatalf("suspended: %s, steps %v", st.Phase, w.cluster.steps())
	}
	w.desire("  version: v1.8.4\n")
	if st, _ = w.settle(); st.Phase != agent.PhaseSucceeded || w.cluster.installed != "v1.8.4" {
		t.Errorf("resumed: %s, installed %s", st.Phase, w.cluster.installed)
	}
}

func TestManualApproval(t *testing.T) {
	w := newWorld(t, "  version: v1.8.4\n  approval: Manual\n", "v1.6.6")
	st, _ := w.settle()
	if st.Phase != agent.PhaseAwaitingApproval || st.Plan == nil || len(w.cluster.ran) != 0 {
		t.Fatalf("awaiting approval: %s, plan %v, steps %v", st.Phase, st.Plan, w.cluster.steps())
	}
	id := st.Plan.ID
	if !strings.Contains(st.Message, "spec.approvedPlan: \""+id+"\"") || stepStates(st) != "v1.7.4:Pending v1.8.4:Pending" {
		t.Errorf("message %q, steps %s", st.Message, stepStates(st))
	}
	// A stale approval (another id) does nothing.
	w.desire("  version: v1.8.4\n  approval: Manual\n  approvedPlan: \"0badc0de\"\n")
	if st, _ = w.settle(); st.Phase != agent.PhaseAwaitingApproval || len(w.cluster.ran) != 0 || !strings.Contains(st.Message, "does not match") {
		t.Fatalf("stale approval: %s %q, steps %v", st.Phase, st.Message, w.cluster.steps())
	}
	// The right id runs the whole plan, across hops, without re-approval.
	w.desire("  version: v1.8.4\n  approval: Manual\n  approvedPlan: \"" + id + "\"\n")
	st, _ = w.settle()
	if st.Phase != agent.PhaseSucceeded || !slices.Equal(w.cluster.steps(), []string{"v1.7.4", "v1.8.4"}) {
		t.Errorf("approved: %s, steps %v (%q)", st.Phase, w.cluster.steps(), st.Message)
	}
}

func TestApprovedPlanSurvivesARestartMidPlan(t *testing.T) {
	w := newWorld(t, "  version: v1.8.4\n  approval: Manual\n", "v1.6.6")
	st, _ := w.settle()
	w.desire("  version: v1.8.4\n  approval: Manual\n  approvedPlan: \"" + st.Plan.ID + "\"\n")
	// The first hop fails transiently; the agent restarts between hops.
	if _, err := w.agent.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.cluster.installed != "v1.7.4" {
		t.Fatalf("first hop did not run: %v", w.cluster.steps())
	}
	w.agent = w.newAgent()
	st, _ = w.settle()
	if st.Phase != agent.PhaseSucceeded || w.cluster.installed != "v1.8.4" {
		t.Fatalf("after a restart mid-plan: %s %q, installed %s", st.Phase, st.Message, w.cluster.installed)
	}
	if st.History[0].Steps != 2 {
		t.Errorf("the resumed run should be the whole approved plan: %+v", st.History[0])
	}
}

func TestMaintenanceWindow(t *testing.T) {
	// Saturday 02:00 for 4h; now is Friday 01:00 UTC.
	w := newWorld(t, "  version: v1.7.4\n  hopTimeout: 1h\n  maintenanceWindow: {schedule: \"0 2 * * 6\", duration: 4h, timeZone: UTC}\n", "v1.6.6")
	w.clock.t = time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)
	st, _ := w.settle()
	if st.Phase != agent.PhaseWaitingForWindow || len(w.cluster.ran) != 0 || !strings.Contains(st.Message, "2026-11-28T02:00:00Z") {
		t.Fatalf("outside the window: %s %q", st.Phase, st.Message)
	}
	// Inside, but too close to the end for a 1h hop.
	w.clock.t = time.Date(2026, 11, 28, 5, 30, 0, 0, time.UTC)
	if st, _ = w.settle(); st.Phase != agent.PhaseWaitingForWindow || st.Reason != "WindowTooShort" {
		t.Fatalf("late in the window: %s %s", st.Phase, st.Reason)
	}
	// A hop already under way in the cluster is finished regardless.
	w.cluster.underWay = "v1.7.4"
	if st, _ = w.settle(); st.Phase != agent.PhaseSucceeded || w.cluster.installed != "v1.7.4" {
		t.Fatalf("hop under way: %s, installed %s", st.Phase, w.cluster.installed)
	}
	// When the window opens, pending work starts without a new commit.
	w.desire("  version: v1.8.4\n  hopTimeout: 1h\n  maintenanceWindow: {schedule: \"0 2 * * 6\", duration: 4h, timeZone: UTC}\n")
	w.clock.t = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if st, _ = w.settle(); st.Phase != agent.PhaseWaitingForWindow {
		t.Fatalf("before the next window: %s", st.Phase)
	}
	w.clock.t = time.Date(2026, 12, 5, 2, 0, 0, 0, time.UTC)
	if st, _ = w.settle(); st.Phase != agent.PhaseSucceeded || w.cluster.installed != "v1.8.4" {
		t.Fatalf("in the next window: %s, installed %s", st.Phase, w.cluster.installed)
	}
}

func TestRefusal(t *testing.T) {
	w := newWorld(t, "  version: v1.6.6\n", "v1.8.4")
	st, _ := w.settle()
	if st.Phase != agent.PhaseRefused || st.Reason != "DowngradeNotSupported" || len(w.cluster.ran) != 0 {
		t.Errorf("downgrade: %s %s", st.Phase, st.Reason)
	}
}

func TestTerminalFailureStallsUntilSomethingChanges(t *testing.T) {
	w := newWorld(t, "  version: v1.7.4\n", "v1.6.6")
	w.cluster.failNext = &fault.Error{Reason: executor.ReasonWorkloadDisrupted, Message: "VMIs disrupted: [default/db-0 (restarted)]", Stall: true}
	st, err := w.settle()
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != agent.PhaseFailed || st.Reason != "WorkloadDisrupted" || stepStates(st) != "v1.7.4:Failed" {
		t.Fatalf("after a disruption: %s %s %s", st.Phase, st.Reason, stepStates(st))
	}
	if st.History[0].Result != "Failed" {
		t.Errorf("history %+v", st.History)
	}
	// No retry on later polls, nor after a restart.
	for i := 0; i < 3; i++ {
		w.clock.add(time.Minute)
		_, _ = w.settle()
	}
	w.agent = w.newAgent()
	if st, _ = w.settle(); st.Phase != agent.PhaseFailed || len(w.cluster.ran) != 1 {
		t.Fatalf("retried a terminal failure: %s, %d runs", st.Phase, len(w.cluster.ran))
	}
	// A new commit of the desired file retries.
	w.desire("  version: v1.7.4\n  hopTimeout: 45m\n")
	if st, _ = w.settle(); st.Phase != agent.PhaseSucceeded {
		t.Errorf("after a new commit: %s", st.Phase)
	}
}

// TestAHopThatTimedOutButFinishedSucceeds: a hop fails HopTimeout while the
// operator goes on and completes it; once the cluster runs the target, the
// status says Succeeded (a fleet's later rings wait for exactly that), not
// Idle as if kvgitops had done nothing.
func TestAHopThatTimedOutButFinishedSucceeds(t *testing.T) {
	w := newWorld(t, "  version: v1.7.4\n", "v1.6.6")
	w.cluster.noop = true
	w.cluster.failNext = &fault.Error{Reason: executor.ReasonHopTimeout, Message: "the hop did not complete in 30m", Stall: true}
	if st, _ := w.settle(); st.Phase != agent.PhaseFailed {
		t.Fatalf("after the timeout: %s %s", st.Phase, st.Reason)
	}
	w.cluster.mu.Lock()
	w.cluster.installed, w.cluster.operator = "v1.7.4", "v1.7.4" // the operator finished
	w.cluster.mu.Unlock()
	st, err := w.settle()
	if err != nil || st.Phase != agent.PhaseSucceeded || st.Reason != "UpToDate" || st.History[0].Result != agent.RunFailed {
		t.Fatalf("after the operator finished: %s %s (%v), history %+v", st.Phase, st.Reason, err, st.History)
	}
	if len(w.cluster.ran) != 1 {
		t.Errorf("%d steps ran, want the one that timed out", len(w.cluster.ran))
	}
}

func TestTransientFailureRetriesWithBackoff(t *testing.T) {
	w := newWorld(t, "  version: v1.7.4\n", "v1.6.6")
	w.cluster.failNext = &fault.Error{Reason: executor.ReasonAPIUnavailable, Message: "connection refused"}
	_, err := w.agent.Reconcile(context.Background())
	if err == nil || w.agent.Snapshot().Phase != agent.PhaseProgressing {
		t.Fatalf("transient: %v, phase %s", err, w.agent.Snapshot().Phase)
	}
	if st, _ := w.settle(); st.Phase != agent.PhaseSucceeded {
		t.Errorf("retry: %s", st.Phase)
	}
}

func TestGitDownAppliesNothingAndKeepsState(t *testing.T) {
	w := newWorld(t, "  version: v1.7.4\n", "v1.6.6")
	w.repo.headErr = &fault.Error{Reason: gitsource.ReasonGitUnavailable, Message: "dial tcp: connection refused"}
	_, err := w.agent.Reconcile(context.Background())
	if fault.ReasonOf(err) != gitsource.ReasonGitUnavailable || len(w.cluster.ran) != 0 {
		t.Fatalf("git down: %v, steps %v", err, w.cluster.steps())
	}
}

func TestHistoryRewrittenStalls(t *testing.T) {
	w := newWorld(t, "  version: v1.7.4\n", "v1.7.4")
	if _, err := w.settle(); err != nil {
		t.Fatal(err)
	}
	w.repo.headErr = &fault.Error{Reason: gitsource.ReasonHistoryRewritten, Stall: true, Message: "force-push"}
	st, err := w.settle()
	w.repo.headErr = nil
	if err != nil || w.agent.Snapshot().Phase != agent.PhaseInvalid || w.agent.Snapshot().Reason != "HistoryRewritten" {
		t.Fatalf("rewritten: %v, %s %s (%s)", err, w.agent.Snapshot().Phase, w.agent.Snapshot().Reason, st.Phase)
	}
}

func TestTeardown(t *testing.T) {
	w := newWorld(t, "  state: Absent\n", "v1.9.0")
	st, _ := w.settle()
	var types []string
	for _, s := range w.cluster.ran {
		types = append(types, string(s.Type))
	}
	if !slices.Equal(types, []string{"DeleteKubeVirt", "DeleteOperator"}) {
		t.Errorf("teardown steps %v (no leftovers to clean)", types)
	}
	if got := st.History[0]; got.Result != "Succeeded" || got.Steps != 3 {
		t.Errorf("teardown run %+v", got)
	}
	if st.Phase != agent.PhaseSucceeded || st.Message != "KubeVirt is absent, as desired" {
		t.Errorf("after teardown: %s %q", st.Phase, st.Message)
	}
}

func TestWebhookTriggersOnlyWithAValidSignature(t *testing.T) {
	w := newWorld(t, "  version: v1.8.4\n", "v1.8.4")
	h := w.agent.WebhookHandler(func() []byte { return []byte("s3cret") })
	for _, tt := range []struct {
		name, header, sig string
		code              int
	}{
		{"github", "X-Hub-Signature-256", sign("s3cret", `{"ref":"refs/heads/main"}`), 202},
		{"generic", "X-Signature", sign("s3cret", `{"ref":"refs/heads/main"}`), 202},
		{"gitea", "X-Gitea-Signature", strings.TrimPrefix(sign("s3cret", `{"ref":"refs/heads/main"}`), "sha256="), 202},
		{"forgejo", "X-Forgejo-Signature", strings.TrimPrefix(sign("s3cret", `{"ref":"refs/heads/main"}`), "sha256="), 202},
		{"gitlab", "X-Gitlab-Token", "s3cret", 202},
		{"wrong secret", "X-Hub-Signature-256", sign("other", `{"ref":"refs/heads/main"}`), 401},
		{"gitea, wrong secret", "X-Gitea-Signature", strings.TrimPrefix(sign("other", `{"ref":"refs/heads/main"}`), "sha256="), 401},
		{"gitea, with GitHub's prefix", "X-Gitea-Signature", sign("s3cret", `{"ref":"refs/heads/main"}`), 401},
		{"gitlab, wrong token", "X-Gitlab-Token", "s3cre", 401},
		{"no signature", "", "", 401},
		{"malformed", "X-Signature", "sha256=zz", 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code := post(h, `{"ref":"refs/heads/main"}`, tt.header, tt.sig)
			if code != tt.code {
				t.Errorf("status %d, want %d", code, tt.code)
			}
		})
	}
}

func cond(s agent.Status, typ string) agent.Condition {
	for _, c := range s.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return agent.Condition{}
}

func TestAStepThatChangesNothingIsNotRepeated(t *testing.T) {
	w := newWorld(t, "  version: v1.7.4\n", "v1.6.6")
	w.cluster.noop = true
	st, err := w.settle()
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != agent.PhaseFailed || st.Reason != "NoProgress" || len(w.cluster.ran) != 1 {
		t.Errorf("no-op step: %s %s after %d runs", st.Phase, st.Reason, len(w.cluster.ran))
	}
}

// TestAStepsProgressReachesTheStatusFile: what a running step waits for is
// committed to the status file, at most every ProgressEvery (a hop takes
// minutes; the file is where people look), not only "starting".
func TestAStepsProgressReachesTheStatusFile(t *testing.T) {
	w := newWorld(t, "  version: v1.6.6\n", "v1.6.6")
	if _, err := w.settle(); err != nil {
		t.Fatal(err)
	}
	w.cluster.progress = []func(func(string)){
		func(say func(string)) { say("waiting for the virt-operator v1.7.4 rollout") }, // at once: not committed
		func(say func(string)) {
			w.clock.add(agent.ProgressEvery)
			say("waiting for observedKubeVirtVersion v1.7.4: Deploying, virt-handler 0/1 updated")
		},
		// Too soon after the last commit: not committed.
		func(say func(string)) {
			say("waiting for observedKubeVirtVersion v1.7.4: Deploying, virt-handler 1/1 updated")
		},
		func(say func(string)) {
			// Said again later (the executor repeats what it waits for):
			// the last of a burst is not lost.
			w.clock.add(agent.ProgressEvery)
			say("waiting for observedKubeVirtVersion v1.7.4: Deploying, virt-handler 1/1 updated")
		},
	}
	w.desire("  version: v1.7.4\n")
	if _, err := w.settle(); err != nil {
		t.Fatal(err)
	}
	var messages []string
	for i := range w.repo.commits {
		st, err := agent.ParseStatus(w.repo.commits[i]["status/prod-east.yaml"])
		if err == nil && st.Reason == string(agent.ReasonHopInProgress) && (len(messages) == 0 || messages[len(messages)-1] != st.Message) {
			messages = append(messages, st.Message)
		}
	}
	want := []string{"step 1/1 Upgrade v1.6.6 -> v1.7.4 (Operator): starting",
		"step 1/1 Upgrade v1.6.6 -> v1.7.4 (Operator): waiting for observedKubeVirtVersion v1.7.4: Deploying, virt-handler 0/1 updated",
		"step 1/1 Upgrade v1.6.6 -> v1.7.4 (Operator): waiting for observedKubeVirtVersion v1.7.4: Deploying, virt-handler 1/1 updated"}
	if !slices.Equal(messages, want) {
		t.Errorf("the status file said, while the step ran:\n%s\nwant\n%s", strings.Join(messages, "\n"), strings.Join(want, "\n"))
	}
}

// TestTheWebhookKeyIsReadForEachDelivery: no key, no webhook (404); a key
// that appears, or changes, while the agent runs is used at once.
func TestTheWebhookKeyIsReadForEachDelivery(t *testing.T) {
	w := newWorld(t, "  version: v1.8.4\n", "v1.8.4")
	var key []byte
	h := w.agent.WebhookHandler(func() []byte { return key })
	body := `{"ref":"refs/heads/main"}`
	if code := post(h, body, "X-Hub-Signature-256", sign("s3cret", body)); code != 404 {
		t.Errorf("without a key: %d, want 404", code)
	}
	key = []byte("s3cret")
	if code := post(h, body, "X-Hub-Signature-256", sign("s3cret", body)); code != 202 {
		t.Errorf("with the key created: %d, want 202", code)
	}
	key = []byte("rotated")
	if code := post(h, body, "X-Hub-Signature-256", sign("s3cret", body)); code != 401 {
		t.Errorf("the old key after a rotation: %d, want 401", code)
	}
}
