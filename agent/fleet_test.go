package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
)

// PeerStatus reads a cluster's status from the newest commit, where its
// agent wrote it, "signed" by the key peerKey names for it (or by whoever
// the test says in forgedBy).
func (r *fakeRepo) PeerStatus(ctx context.Context, cluster, key string) ([]byte, error) {
	r.mu.Lock()
	n := len(r.commits) - 1
	signer := r.forgedBy[cluster]
	r.mu.Unlock()
	data, _, err := r.Read(ctx, r.rev(n), agent.PeerStatusPath(cluster))
	if err != nil {
		return nil, err
	}
	if signer == "" {
		signer = peerKey(cluster)
	}
	if signer != key {
		return nil, &fault.Error{Reason: gitsource.ReasonSignatureInvalid, Stall: true, Message: "status/" + cluster + " is signed by another key"}
	}
	return data, nil
}

// PeerStatuses reads each peer as PeerStatus does; a failure to reach Git
// fails the call.
func (r *fakeRepo) PeerStatuses(ctx context.Context, peers map[string]string) (map[string]agent.PeerRead, error) {
	out := map[string]agent.PeerRead{}
	for c, key := range peers {
		data, err := r.PeerStatus(ctx, c, key)
		if err != nil && !fault.Stalls(err) {
			return nil, err
		}
		out[c] = agent.PeerRead{Data: data, Err: err}
	}
	return out, nil
}

// peerKey is the status key of a fleet's cluster in these tests.
func peerKey(cluster string) string { return "ssh-ed25519 AAAA" + strings.ReplaceAll(cluster, "-", "") }

const fleetFile = "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtFleet\nspec:\n  kubevirt: {version: %s}\n" +
	"  rings:\n  - {name: canary, clusters: [lab-1], soak: 1h}\n  - {name: staging, clusters: [eu-2]}\n" +
	"  statusKeys: {lab-1: ssh-ed25519 AAAAlab1, eu-2: ssh-ed25519 AAAAeu2}\n"

// member is one cluster of a fleet sharing a repository and a clock.
type member struct {
	cluster *fakeCluster
	agent   *agent.Agent
	name    string
	repo    *fakeRepo
	t       *testing.T
}

func fleetMember(t *testing.T, repo *fakeRepo, c *clock, name string) *member {
	m := &member{cluster: &fakeCluster{installed: "v1.6.6", operator: "v1.6.6"}, name: name, repo: repo, t: t}
	m.agent = agent.New(agent.Config{ClusterName: name, DesiredPath: "fleet.yaml", Fleet: true, Peers: repo, Clock: c.now}, repo, m.cluster, realCatalog)
	return m
}

func (m *member) settle() agent.Status {
	m.t.Helper()
	for i := 0; i < 100; i++ {
		again, err := m.agent.Reconcile(context.Background())
		if err != nil {
			m.t.Fatalf("%s: %v", m.name, err)
		}
		if !again {
			break
		}
	}
	st, err := agent.ParseStatus([]byte(m.repo.file(agent.PeerStatusPath(m.name))))
	if err != nil {
		m.t.Fatal(err)
	}
	return st
}

func TestFleetRingsGateOnTheCanarysStatusAndSoak(t *testing.T) {
	repo, c := &fakeRepo{}, &clock{t: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}
	repo.commit(map[string]string{"fleet.yaml": strings.Replace(fleetFile, "%s", "v1.7.4", 1)})
	canary, staging := fleetMember(t, repo, c, "lab-1"), fleetMember(t, repo, c, "eu-2")

	st := staging.settle()
	if st.Phase != agent.PhaseWaitingForRing || st.Message != "waiting for ring canary: lab-1 has no status file yet" || len(staging.cluster.ran) != 0 {
		t.Fatalf("staging before the canary: %s %q, ran %v", st.Phase, st.Message, staging.cluster.steps())
	}
	if st.Desired == nil || st.Desired.Ring != "staging" {
		t.Errorf("the status names the ring: %+v", st.Desired)
	}
	if st := canary.settle(); st.Phase != agent.PhaseSucceeded || canary.cluster.installed != "v1.7.4" {
		t.Fatalf("the canary: %s %q", st.Phase, st.Message)
	}
	// The soak counts from when staging first saw the canary Succeeded,
	// whatever times the canary's file claims.
	if st := staging.settle(); st.Message != "waiting for ring canary: lab-1 on v1.7.4 for 0s of 1h" || len(staging.cluster.ran) != 0 {
		t.Fatalf("staging right after the canary: %s %q", st.Phase, st.Message)
	}
	c.add(20 * time.Minute)
	if st := staging.settle(); st.Message != "waiting for ring canary: lab-1 on v1.7.4 for 20m of 1h" || len(staging.cluster.ran) != 0 {
		t.Fatalf("staging while the canary soaks: %s %q", st.Phase, st.Message)
	}
	c.add(40 * time.Minute)
	if st := staging.settle(); st.Phase != agent.PhaseSucceeded || staging.cluster.installed != "v1.7.4" {
		t.Fatalf("staging after the soak: %s %q", st.Phase, st.Message)
	}

	// The next version fails on the canary: staging is halted, and
	// resumes once the canary succeeds.
	repo.commit(map[string]string{"fleet.yaml": strings.Replace(fleetFile, "%s", "v1.8.4", 1)})
	canary.cluster.failNext = &fault.Error{Reason: executor.ReasonWorkloadDisrupted, Message: "VMIs disrupted: [default/db-0]", Stall: true}
	if st := canary.settle(); st.Phase != agent.PhaseFailed {
		t.Fatalf("the canary should fail: %s %q", st.Phase, st.Message)
	}
	st = staging.settle()
	if st.Phase != agent.PhaseWaitingForRing || st.Reason != "RolloutHalted" || !strings.Contains(st.Message, "lab-1 (ring canary) is Failed WorkloadDisrupted") {
		t.Fatalf("staging after the canary failed: %s %s %q", st.Phase, st.Reason, st.Message)
	}
	repo.commit(map[string]string{"fleet.yaml": strings.Replace(fleetFile, "%s", "v1.8.4", 1) + "  halt: {statusMissingAfter: 2h}\n"})
	// A forged Failed (not signed by the canary's key) does not halt:
	// it is a status nobody can prove.
	repo.mu.Lock()
	repo.forgedBy = map[string]string{"lab-1": "ssh-ed25519 AAAAmallory"}
	repo.mu.Unlock()
	if st := staging.settle(); st.Reason != "WaitingForRing" || !strings.Contains(st.Message, "lab-1 has no status it can prove (SignatureInvalid: status/lab-1 is signed by another key) yet") {
		t.Fatalf("staging on a forged canary status: %s %q", st.Reason, st.Message)
	}
	repo.mu.Lock()
	repo.forgedBy = nil
	repo.mu.Unlock()
	if st := canary.settle(); st.Phase != agent.PhaseSucceeded || canary.cluster.installed != "v1.8.4" {
		t.Fatalf("the canary after the fix: %s %q", st.Phase, st.Message)
	}
	staging.settle()
	c.add(time.Hour)
	if st := staging.settle(); st.Phase != agent.PhaseSucceeded || staging.cluster.installed != "v1.8.4" {
		t.Fatalf("staging after the canary's fix and soak: %s %q", st.Phase, st.Message)
	}
}

func TestAClusterInNoRingRefusesToAct(t *testing.T) {
	repo, c := &fakeRepo{}, &clock{t: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}
	repo.commit(map[string]string{"fleet.yaml": strings.Replace(fleetFile, "%s", "v1.7.4", 1)})
	m := fleetMember(t, repo, c, "mars-1")
	st := m.settle()
	if st.Phase != agent.PhaseRefused || st.Reason != "NotInFleet" || !strings.Contains(st.Message, `cluster "mars-1" is in no ring`) || len(m.cluster.ran) != 0 {
		t.Fatalf("%s %s %q, ran %v", st.Phase, st.Reason, st.Message, m.cluster.steps())
	}
}

// TestAPeerStatusFromANewerAgentIsRead: while a fleet upgrades kvgitops, an
// earlier ring's status file may carry fields this agent does not know
// (docs/compatibility.md): they are ignored, and the gate reads the rest;
// another apiVersion is still unreadable.
func TestAPeerStatusFromANewerAgentIsRead(t *testing.T) {
	repo, c := &fakeRepo{}, &clock{t: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}
	repo.commit(map[string]string{"fleet.yaml": strings.Replace(fleetFile, "%s", "v1.7.4", 1)})
	canary, staging := fleetMember(t, repo, c, "lab-1"), fleetMember(t, repo, c, "eu-2")
	if st := canary.settle(); st.Phase != agent.PhaseSucceeded {
		t.Fatalf("the canary: %s %q", st.Phase, st.Message)
	}
	path := agent.PeerStatusPath("lab-1")
	written := repo.file(path)
	repo.commit(map[string]string{path: written + "rolloutWave: 3\n"})
	if st := staging.settle(); st.Message != "waiting for ring canary: lab-1 on v1.7.4 for 0s of 1h" {
		t.Errorf("a newer agent's status: %s %q", st.Phase, st.Message)
	}
	repo.commit(map[string]string{path: strings.Replace(written, "kvgitops.dev/v1alpha1", "kvgitops.dev/v1beta1", 1)})
	if st := staging.settle(); !strings.Contains(st.Message, "its status file is unreadable") {
		t.Errorf("another apiVersion: %s %q", st.Phase, st.Message)
	}
}
