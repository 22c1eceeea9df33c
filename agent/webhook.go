package agent

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"sync"
)

// MaxWebhookBody caps a webhook request.
const MaxWebhookBody = 1 << 20

// deliveryHeaders name a delivery the way Git hosts do: a repeated id (a
// retry, or a captured request replayed) triggers nothing more.
var deliveryHeaders = []string{"X-GitHub-Delivery", "X-Gitlab-Event-UUID", "X-Gitea-Delivery", "X-Forgejo-Delivery", "X-Request-Id"}

// deliveries remembers the last delivery ids seen, oldest first.
type deliveries struct {
	mu   sync.Mutex
	seen map[string]bool
	ring []string
}

const rememberDeliveries = 1024

// first records id and reports whether it is new.
func (d *deliveries) first(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen[id] {
		return false
	}
	if d.seen == nil {
		d.seen = map[string]bool{}
	}
	if len(d.ring) == rememberDeliveries {
		delete(d.seen, d.ring[0])
		d.ring = d.ring[1:]
	}
	d.seen[id] = true
	d.ring = append(d.ring, id)
	return true
}

// WebhookHandler triggers a poll when a request is authentic under the
// secret key returns (read for each request: a Secret created or rotated
// later is used at once; none: 404) as GitHub, Gitea, Forgejo or GitLab
// send it, or carries the generic X-Signature (authentic). It only triggers a poll: the payload is
// never trusted for anything else. A delivery id seen before (GitHub's
// X-GitHub-Delivery and its peers) is acknowledged and ignored.
func (a *Agent) WebhookHandler(key func() []byte) http.Handler {
	var seen deliveries
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		secret := key()
		if len(secret) == 0 {
			http.Error(w, "webhook not configured", http.StatusNotFound)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxWebhookBody+1))
		if err != nil || len(body) > MaxWebhookBody {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if !authentic(secret, body, r.Header) {
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		for _, h := range deliveryHeaders {
			if id := r.Header.Get(h); id != "" {
				if !seen.first(h + ":" + id) {
					w.WriteHeader(http.StatusOK) // a duplicate: nothing to do
					return
				}
				break
			}
		}
		a.Trigger()
		w.WriteHeader(http.StatusAccepted)
	})
}

// authentic checks a request the way its Git host signs it (the first of
// these headers present decides; docs/operations.md, "Webhook"):
//   - GitHub: X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>
//     (Gitea and Forgejo send it too);
//   - Gitea: X-Gitea-Signature, Forgejo: X-Forgejo-Signature: <hex HMAC>;
//   - GitLab: X-Gitlab-Token: the secret itself (GitLab signs nothing);
//   - anything else: X-Signature: sha256=<hex HMAC>.
func authentic(secret, body []byte, h http.Header) bool {
	switch {
	case h.Get("X-Hub-Signature-256") != "":
		return validSignature(secret, body, h.Get("X-Hub-Signature-256"))
	case h.Get("X-Gitea-Signature") != "":
		return validSignature(secret, body, "sha256="+h.Get("X-Gitea-Signature"))
	case h.Get("X-Forgejo-Signature") != "":
		return validSignature(secret, body, "sha256="+h.Get("X-Forgejo-Signature"))
	case h.Get("X-Gitlab-Token") != "":
		return hmac.Equal([]byte(h.Get("X-Gitlab-Token")), secret)
	default:
		return validSignature(secret, body, h.Get("X-Signature"))
	}
}

func validSignature(secret, body []byte, header string) bool {
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}
