package planner

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxMessage is how much of a message from a server or a file may reach a
// status file, an event or a log line.
const MaxMessage = 512

// Sanitize makes untrusted text safe to echo: control characters (newlines,
// ANSI escapes, NUL) and invisible formatting become spaces, invalid UTF-8
// is replaced, runs of spaces collapse, and the result is cut to max bytes
// on a rune boundary with an ellipsis.
func Sanitize(s string, max int) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) {
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteRune(r)
	}
	out := strings.TrimSpace(b.String())
	if len(out) <= max {
		return out
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return out[:cut] + "…"
}
