package simulator_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kvgitops/kvgitops/test/simulator"
)

// slowReplies holds each reply to the simulator's writes of the KubeVirt
// CR for a while after the apiserver has made the write: a watcher sees the
// new state before the simulator hears back, as under load.
type slowReplies struct{ next http.RoundTripper }

func (s slowReplies) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(r)
	if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/kubevirts/") {
		time.Sleep(300 * time.Millisecond)
	}
	return resp, err
}

// TestTransitionsIncludeWhatAWatcherSaw: once a client sees the CR an
// install left Deployed, the simulator's transitions hold the completed
// install, even while the simulator has not heard back from that write
// (executor and e2e tests compare CompletedHops the moment the executor
// saw a hop done).
func TestTransitionsIncludeWhatAWatcherSaw(t *testing.T) {
	h := startWrapped(t, simulator.Options{}, func(rt http.RoundTripper) http.RoundTripper { return slowReplies{rt} })
	h.install(t, "v1.7.4", nil)
	// A hop, watched from outside the simulator.
	h.applyOperator(t, "v1.8.4")
	deadline := time.Now().Add(waitFor)
	for {
		kv := h.kv(t)
		phase, _, _ := unstructured.NestedString(kv.Object, "status", "phase")
		observed, _, _ := unstructured.NestedString(kv.Object, "status", "observedKubeVirtVersion")
		available, why, _, _ := condition(kv, "Available")
		if phase == "Deployed" && observed == "v1.8.4" && available == "True" && why == "AllComponentsReady" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hop to v1.8.4 never showed: %v", kv.Object["status"])
		}
		time.Sleep(10 * time.Millisecond)
	}
	want := []simulator.Hop{{To: "v1.7.4"}, {From: "v1.7.4", To: "v1.8.4"}}
	if got := h.sim.CompletedHops(); !slices.Equal(got, want) {
		t.Errorf("the moment the CR showed v1.8.4 deployed, the simulator's hops were %v, want %v", got, want)
	}
}
