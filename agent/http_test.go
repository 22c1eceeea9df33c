package agent_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/agent"
)

func sign(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func post(h http.Handler, body, header, sig string) int {
	r := httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(body))
	if header != "" {
		r.Header.Set(header, sig)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// TestWebhookDeliveriesAreDeduplicated: a retried or replayed delivery,
// validly signed, triggers once.
func TestWebhookDeliveriesAreDeduplicated(t *testing.T) {
	w := newWorld(t, "  version: v1.8.4\n", "v1.8.4")
	h := w.agent.WebhookHandler(func() []byte { return []byte("s3cret") })
	body := `{"ref":"refs/heads/main"}`
	send := func(id string) int {
		r := httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(body))
		r.Header.Set("X-Hub-Signature-256", sign("s3cret", body))
		r.Header.Set("X-GitHub-Delivery", id)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	if code := send("d-1"); code != http.StatusAccepted {
		t.Fatalf("first delivery: %d", code)
	}
	if code := send("d-1"); code != http.StatusOK {
		t.Errorf("the same delivery again: %d, want 200 and no trigger", code)
	}
	if code := send("d-2"); code != http.StatusAccepted {
		t.Errorf("a new delivery: %d", code)
	}
}

// countingRepo fails every poll and counts them.
type countingRepo struct {
	agent.Repo
	polls atomic.Int64
}

func (r *countingRepo) Head(context.Context, string) (string, error) {
	r.polls.Add(1)
	return "", errors.New("git is down")
}

// TestTriggersDoNotCutTheBackOffShort: while the agent backs off after a
// failure, a storm of webhook triggers makes no extra poll.
func TestTriggersDoNotCutTheBackOffShort(t *testing.T) {
	repo := &countingRepo{Repo: &fakeRepo{}}
	a := agent.New(agent.Config{ClusterName: "c", Interval: time.Hour, MaxBackoff: time.Hour}, repo, &fakeCluster{}, realCatalog)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for repo.polls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for range 200 {
		a.Trigger()
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	// The first back-off is one second; the storm lasted about 200 ms.
	if n := repo.polls.Load(); n != 1 {
		t.Errorf("%d polls during the back-off, want 1", n)
	}
}
