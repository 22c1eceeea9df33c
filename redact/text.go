package redact

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxMessage is how much of a message from a server or a file may reach a
// status file, an event or a log line.
const MaxMessage = 512

// maxValueLen bounds how much of an offending value Quote echoes.
const maxValueLen = 64

// Text makes untrusted text safe to echo: control characters (newlines,
// ANSI escapes, NUL) and invisible formatting become spaces, invalid UTF-8
// is replaced, runs of spaces collapse, and the result is cut to max bytes
// on a rune boundary with an ellipsis.
func Text(s string, max int) string {
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
	return Truncate(strings.TrimSpace(b.String()), max)
}

// Quote renders an untrusted value for an error message or a status file:
// Go-quoted (so newlines, escapes and control characters are visible and
// inert) and cut to 64 bytes.
func Quote(s string) string {
	if len(s) > maxValueLen {
		return strconv.Quote(cut(s, maxValueLen)) + "…"
	}
	return strconv.Quote(s)
}

// Truncate cuts s to at most max bytes on a rune boundary, ending in an
// ellipsis when it cut.
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return cut(s, max-len("…")) + "…"
}

func cut(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:max(n, 0)]
}

// OrDash is s, or "-" when it is empty (tables and messages).
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// QuoteOrUnset is Quote(s), or "unset" for an empty value (a field a
// message reports as changed may have been empty on either side).
func QuoteOrUnset(s string) string {
	if s == "" {
		return "unset"
	}
	return Quote(s)
}
