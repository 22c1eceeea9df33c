package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kvgitops/kvgitops/agent"
)

// forwardedHeader marks a delivery one replica passed to the leader: it is
// never passed on again.
const forwardedHeader = "X-Kvgitops-Forwarded-By"

// hookForwarder is the webhook receiver of a replica that may be a
// standby. A delivery is checked here first (the agent's handler: an
// inauthentic or repeated one ends here); an authentic one received while
// another replica leads goes on to the leader's /hook — the same body and
// headers, which the leader checks again — so a push reaches the replica
// that acts, whichever one the Service picked. Without a known leader it
// only wakes this replica.
type hookForwarder struct {
	local   http.Handler
	leading func() bool
	// leader is the leader's webhook address (host:port), ok false when
	// unknown or this replica.
	leader func(ctx context.Context) (addr string, ok bool)
	client *http.Client
	id     string
	log    *slog.Logger
}

func (f *hookForwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.leading() || r.Header.Get(forwardedHeader) != "" || r.Method != http.MethodPost {
		f.local.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, agent.MaxWebhookBody+1))
	if err != nil {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	rec := httptest.NewRecorder()
	r.Body = io.NopCloser(bytes.NewReader(body))
	f.local.ServeHTTP(rec, r)
	if rec.Code != http.StatusAccepted { // refused, or a repeated delivery
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	addr, ok := f.leader(r.Context())
	if !ok {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/hook", bytes.NewReader(body))
	if err != nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	req.Header = r.Header.Clone() // the signature and delivery headers; the transport sets its own framing
	req.Header.Set(forwardedHeader, f.id)
	resp, err := f.client.Do(req)
	if err != nil {
		f.log.Warn("Webhook not forwarded", "leader", addr, "error", err.Error())
		w.WriteHeader(http.StatusAccepted)
		return
	}
	_ = resp.Body.Close()
	f.log.Info("Webhook forwarded", "leader", addr, "status", resp.StatusCode)
	w.WriteHeader(http.StatusAccepted)
}

// leaderHook reads the Lease for the leader's webhook address: the pod IP
// its identity carries (replicaIdentity) and this replica's webhook port.
func (e *election) leaderHook(port string) func(ctx context.Context) (string, bool) {
	return func(ctx context.Context) (string, bool) {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		l, err := e.leases.Leases(e.ns).Get(ctx, e.name, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == e.id {
			return "", false
		}
		ip, ok := identityIP(*l.Spec.HolderIdentity)
		if !ok {
			return "", false
		}
		return net.JoinHostPort(ip.String(), port), true
	}
}

// identityIP is the pod IP a replica identity ends with ("…@10.1.2.3").
func identityIP(id string) (netip.Addr, bool) {
	i := strings.LastIndexByte(id, '@')
	if i < 0 {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(id[i+1:])
	return ip, err == nil && !ip.IsUnspecified() && !ip.IsMulticast()
}
