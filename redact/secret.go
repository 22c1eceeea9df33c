package redact

import (
	"encoding/base64"
	"log/slog"
	"net/url"
	"strings"
)

// Secret is a credential held in memory: it never prints, in fmt, slog or
// any text encoding. string(s) is the only way to the value.
type Secret string

const redacted = "[redacted]"

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Scrubber removes secrets from text, in every form they could be echoed:
// as is, URL-escaped, and base64 (a basic-auth header is base64 of
// "user:password", so pass that pair as a secret too).
type Scrubber []string

// NewScrubber scrubs secrets; ones shorter than 4 bytes are not (they
// would redact ordinary text).
func NewScrubber(secrets ...string) Scrubber {
	var out Scrubber
	seen := map[string]bool{}
	for _, s := range secrets {
		if len(s) < 4 {
			continue
		}
		b := []byte(s)
		for _, v := range []string{s, url.QueryEscape(s), url.PathEscape(s), base64.StdEncoding.EncodeToString(b),
			base64.RawStdEncoding.EncodeToString(b), base64.URLEncoding.EncodeToString(b)} {
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	}
	return out
}

// Scrub replaces every secret in msg.
func (sc Scrubber) Scrub(msg string) string {
	for _, v := range sc {
		msg = strings.ReplaceAll(msg, v, redacted)
	}
	return msg
}
