package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestAStandbyForwardsWebhooksToTheLeader: an authentic delivery a
// standby receives reaches the leader's /hook with its body and signature
// (the leader checks it again) and is marked forwarded; a refused or
// repeated one, a forwarded one and one the leader itself receives do not
// travel.
func TestAStandbyForwardsWebhooksToTheLeader(t *testing.T) {
	var mu sync.Mutex
	var got []*http.Request
	var bodies []string
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer leader.Close()
	// The agent's handler stands in: 401 without the token, 200 for a
	// repeated delivery id, 202 otherwise.
	seen := map[string]bool{}
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		switch {
		case r.Header.Get("X-Gitlab-Token") != "s3cret":
			http.Error(w, "invalid signature", http.StatusUnauthorized)
		case seen[r.Header.Get("X-Gitlab-Event-UUID")]:
			w.WriteHeader(http.StatusOK)
		default:
			seen[r.Header.Get("X-Gitlab-Event-UUID")] = true
			w.WriteHeader(http.StatusAccepted)
		}
	})
	leading := false
	f := &hookForwarder{local: local, leading: func() bool { return leading }, client: leader.Client(), id: "standby_1@10.0.0.2",
		leader: func(context.Context) (string, bool) { return strings.TrimPrefix(leader.URL, "http://"), true },
		log:    slog.New(slog.NewTextHandler(io.Discard, nil))}
	post := func(token, id string, forwarded bool) int {
		r := httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(`{"ref":"refs/heads/main"}`))
		r.Header.Set("X-Gitlab-Token", token)
		r.Header.Set("X-Gitlab-Event-UUID", id)
		if forwarded {
			r.Header.Set(forwardedHeader, "other")
		}
		w := httptest.NewRecorder()
		f.ServeHTTP(w, r)
		return w.Code
	}
	if code := post("s3cret", "a", false); code != http.StatusAccepted {
		t.Errorf("authentic delivery: %d", code)
	}
	if code := post("wrong", "b", false); code != http.StatusUnauthorized {
		t.Errorf("inauthentic delivery: %d, want 401", code)
	}
	if code := post("s3cret", "a", false); code != http.StatusOK {
		t.Errorf("repeated delivery: %d, want 200", code)
	}
	if code := post("s3cret", "c", true); code != http.StatusAccepted {
		t.Errorf("forwarded delivery: %d", code)
	}
	leading = true
	if code := post("s3cret", "d", false); code != http.StatusAccepted {
		t.Errorf("delivery to the leader: %d", code)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("%d deliveries reached the leader, want 1 (the first)", len(got))
	}
	r := got[0]
	if r.URL.Path != "/hook" || r.Header.Get("X-Gitlab-Token") != "s3cret" || r.Header.Get("X-Gitlab-Event-UUID") != "a" ||
		r.Header.Get(forwardedHeader) != "standby_1@10.0.0.2" || bodies[0] != `{"ref":"refs/heads/main"}` {
		t.Errorf("forwarded %s %v %q", r.URL.Path, r.Header, bodies[0])
	}
}

func TestIdentityIP(t *testing.T) {
	for id, want := range map[string]string{
		"kvgitops-6d9f_1733580000000000000@10.244.1.7": "10.244.1.7",
		"kvgitops-6d9f_1733580000000000000@fd00::7":    "fd00::7",
		"kvgitops-6d9f_1733580000000000000":            "",
		"host_1@not-an-ip":                             "",
		"host_1@0.0.0.0":                               "",
	} {
		ip, ok := identityIP(id)
		if (want == "" && ok) || (want != "" && (!ok || ip.String() != want)) {
			t.Errorf("identityIP(%q) = %v %v, want %q", id, ip, ok, want)
		}
	}
}
