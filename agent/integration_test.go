package agent_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/release"
	"github.com/kvgitops/kvgitops/test/gitserver"
	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestWiredAgent runs the real pieces together in-process: a git server, the
// apiserver, the simulator, the release server, gitsource, executor and the
// agent loop, as the binary wires them.
func TestWiredAgent(t *testing.T) {
	env := testenv.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := simulator.Wipe(ctx, env.Config); err != nil {
		t.Fatal(err)
	}
	sim, err := simulator.New(env.Config, simulator.Options{RolloutDelay: 100 * time.Millisecond, StrategyDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	rel := releases.NewServer(nil)
	defer rel.Close()
	git, err := gitserver.New(gitserver.Options{Username: "agent", Password: "pw-for-tests"})
	if err != nil {
		t.Fatal(err)
	}
	defer git.Close()
	human, err := git.User()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := human.CommitFile("kubevirt.yaml", []byte(header+"  version: v1.6.6\n"), "install KubeVirt"); err != nil {
		t.Fatal(err)
	}

	src, err := gitsource.New(gitsource.Config{URL: git.URL(), Auth: gitsource.Auth{Username: "agent", Password: "pw-for-tests", CA: git.CertPool()}})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := release.New(release.Config{
		ReleasesURL: rel.ReleasesURL(), ManifestBaseURL: rel.DownloadBaseURL(),
		HTTP: release.HTTPConfig{AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, RootCAs: rel.CertPool()},
	})
	if err != nil {
		t.Fatal(err)
	}
	ex, err := executor.New(env.Config, executor.Config{Releases: rc, FailGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a := agent.New(agent.Config{ClusterName: "lab", Interval: 200 * time.Millisecond, MaxBackoff: 16 * time.Second},
		&agent.GitRepo{Source: src, DesiredPath: "kubevirt.yaml"}, ex, func(ctx context.Context) (*planner.Catalog, error) { return rc.Catalog(ctx) })
	health := agent.NewHealth(a) // wedged after 10 intervals + MaxBackoff: 18 s (a starved test process has gone 10 s without a look)
	health.SetLeading(true)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	// Wait for what a reviewer sees: the status committed to Git.
	waitPhase := func(version string) agent.Status {
		t.Helper()
		for {
			if text, err := git.Show("main", "status/lab.yaml"); err == nil {
				if s, err := agent.ParseStatus([]byte(text)); err == nil && s.Phase == agent.PhaseSucceeded && s.Observed.Version == version {
					return s
				}
			}
			select {
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %+v", version, a.Snapshot())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	waitPhase("v1.6.6")
	// A VMI whose migrations take longer than the liveness allows a pass:
	// each hop's workload wait outlasts it, and the agent stays healthy
	// (before, /healthz said 503 and the kubelet killed it mid-wait).
	if _, err := sim.CreateVMI(ctx, "default", "slow"); err != nil {
		t.Fatal(err)
	}
	sim.SlowMigrations(22 * time.Second)
	if _, err := human.CommitFile("kubevirt.yaml", []byte(header+"  version: v1.8.4\n"), "upgrade KubeVirt"); err != nil {
		t.Fatal(err)
	}
	a.Trigger()
	unhealthy := make(chan string, 1)
	stopProbe := make(chan struct{})
	go func() {
		for {
			rec := httptest.NewRecorder()
			health.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
			if rec.Code != http.StatusOK {
				unhealthy <- fmt.Sprintf("%d %s", rec.Code, rec.Body)
				return
			}
			select {
			case <-stopProbe:
				close(unhealthy)
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	waitPhase("v1.8.4")
	close(stopProbe)
	if bad, ok := <-unhealthy; ok {
		t.Errorf("/healthz during the hops' workload waits: %s", bad)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	want := []simulator.Hop{{To: "v1.6.6"}, {From: "v1.6.6", To: "v1.7.4"}, {From: "v1.7.4", To: "v1.8.4"}}
	if got := sim.CompletedHops(); !slices.Equal(got, want) {
		t.Errorf("hops %v, want %v", got, want)
	}
	text, err := git.Show("main", "status/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := agent.ParseStatus([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != agent.PhaseSucceeded || st.Observed.Version != "v1.8.4" || len(st.History) != 2 || st.History[0].Steps != 2 {
		t.Errorf("committed status: %s, %s, history %+v", st.Phase, st.Observed.Version, st.History)
	}
	log, _ := git.Log("status/lab.yaml")
	if len(log) < 3 || !strings.Contains(log[0], "status(lab): Succeeded") {
		t.Errorf("status log %v", log)
	}
	// Human commits are all there, under the agent's.
	all, _ := git.Log("kubevirt.yaml")
	if len(all) != 2 {
		t.Errorf("desired file log %v", all)
	}
}
