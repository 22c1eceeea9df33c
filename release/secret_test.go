package release_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/redact"
	"github.com/kvgitops/kvgitops/release"
)

// TestSecretsNeverPrint puts each secret-bearing type through every way a
// value reaches a log or a file: fmt verbs, slog's text and JSON handlers
// (alone and inside a struct), JSON and YAML marshalling.
func TestSecretsNeverPrint(t *testing.T) {
	const canary = "canary-secret-7f3e"
	type config struct {
		Token redact.Secret
		Auth  gitsource.Auth
		Rel   release.Config
	}
	values := map[string]any{
		"redact.Secret": redact.Secret(canary),
		"a struct of them": config{Token: canary, Auth: gitsource.Auth{Username: "u", Password: canary, BearerToken: canary, Identity: canary},
			Rel: release.Config{Token: canary}},
	}
	for name, v := range values {
		var out bytes.Buffer
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		slog.New(slog.NewTextHandler(&out, nil)).Info("m", "v", v)
		slog.New(slog.NewJSONHandler(&out, nil)).Info("m", "v", v)
		if b, err := json.Marshal(v); err == nil {
			out.Write(b)
		}
		if b, err := yaml.Marshal(v); err == nil {
			out.Write(b)
		}
		if strings.Contains(out.String(), canary) {
			t.Errorf("%s printed the secret:\n%s", name, out.String())
		}
	}
}
