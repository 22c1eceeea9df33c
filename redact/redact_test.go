package redact_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/redact"
)

func TestText(t *testing.T) {
	for in, want := range map[string]string{
		"a\nb\x1b[31mc":             "a b [31mc",
		"  many   spaces\t\there  ": "many spaces here",
		"bidi\u202eoverride":        "bidi override",
		"bad \xff utf8":             "bad \uFFFD utf8",
	} {
		if got := redact.Text(in, 100); got != want {
			t.Errorf("Text(%q) = %q, want %q", in, got, want)
		}
	}
	if got := redact.Text(strings.Repeat("é", 100), 11); got != "éééé…" {
		t.Errorf("cut on a rune boundary: %q, want %q", got, "éééé…")
	}
}

func TestQuote(t *testing.T) {
	if got := redact.Quote("a\nb"); got != `"a\nb"` {
		t.Errorf("Quote = %s, want %s", got, `"a\nb"`)
	}
	if got := redact.QuoteOrUnset(""); got != "unset" {
		t.Errorf("QuoteOrUnset of nothing = %s, want unset", got)
	}
	if got := redact.QuoteOrUnset("v1"); got != `"v1"` {
		t.Errorf("QuoteOrUnset = %s, want %s", got, `"v1"`)
	}
	if got := redact.Quote(strings.Repeat("x", 100)); got != `"`+strings.Repeat("x", 64)+`"…` {
		t.Errorf("Quote of 100 bytes = %s, want 64 and an ellipsis", got)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := redact.Secret("hunter2-token")
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "token", s)
	j, _ := json.Marshal(map[string]any{"token": s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s), b.String(), string(j)} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("the secret printed: %s", out)
		}
	}
}

func TestScrubberCatchesEveryEncoding(t *testing.T) {
	sc := redact.NewScrubber("user:pa ss/word", "abc")
	pair := base64.StdEncoding.EncodeToString([]byte("user:pa ss/word"))
	msg := sc.Scrub("auth " + pair + " url user%3Apa+ss%2Fword raw user:pa ss/word short abc")
	if strings.Contains(msg, pair) || strings.Contains(msg, "pa ss") || strings.Contains(msg, "pa+ss") {
		t.Errorf("scrubbed: %s", msg)
	}
	if !strings.Contains(msg, "abc") {
		t.Errorf("a 3-byte secret would redact ordinary text: %s", msg)
	}
}
