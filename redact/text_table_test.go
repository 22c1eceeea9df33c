package redact_test

import (
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/redact"
)

func TestTextTable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"line one\nline two\r\n", "line one line two"},
		{"\x1b[31mred\x1b[0m", "[31mred [0m"},
		{"nul\x00byte", "nul byte"},
		{"bidi \u202eevil", "bidi evil"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{"---\nkind: Secret", "--- kind: Secret"},
	}
	for _, tt := range tests {
		if got := redact.Text(tt.in, 100); got != tt.want {
			t.Errorf("redact.Text(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long := redact.Text(strings.Repeat("é", 1000), redact.MaxMessage)
	if len(long) > redact.MaxMessage || !strings.HasSuffix(long, "…") {
		t.Errorf("long message: %d bytes, want at most %d ending in …", len(long), redact.MaxMessage)
	}
}
