package releases

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/kvgitops/kvgitops/test/realmanifests"
)

// TestSynthesizedEqualsGenuine: for every genuine asset, the manifest
// synthesized for its tag holds the same objects, the same RBAC rules, the
// same CRD versions and a Deployment of the same shape (digests, resource
// figures, descriptions and schemas aside).
func TestSynthesizedEqualsGenuine(t *testing.T) {
	for _, f := range realmanifests.Require(t) {
		if f.Edited {
			continue
		}
		t.Run(f.Tag, func(t *testing.T) {
			data, err := os.ReadFile(f.Path)
			if err != nil {
				t.Fatal(err)
			}
			want, got := shapeOf(t, data), shapeOf(t, Synthesized(f.Tag))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("synthesized %s differs from the genuine asset (-genuine +synthesized):\n%s", f.Tag, diff)
			}
		})
	}
}

// shape is what the fidelity test compares.
type shape struct {
	Objects    []string
	Rules      map[string][]string
	CRD        []string
	Deployment []string
}

func shapeOf(t *testing.T, data []byte) shape {
	t.Helper()
	s := shape{Rules: map[string][]string{}}
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var o map[string]any
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatal(err)
		}
		if len(o) == 0 {
			continue
		}
		md, _ := o["metadata"].(map[string]any)
		kind, name, ns := o["kind"].(string), md["name"].(string), str(md["namespace"])
		s.Objects = append(s.Objects, fmt.Sprintf("%s %s %s/%s", o["apiVersion"], kind, ns, name))
		switch kind {
		case "ClusterRole", "Role":
			var rs []string
			for _, r := range anyList(o["rules"]) {
				rs = append(rs, flatten("", r))
			}
			sort.Strings(rs)
			s.Rules[kind+"/"+name] = rs
		case "CustomResourceDefinition":
			spec := o["spec"].(map[string]any)
			_, topStatus := dig(spec, "subresources", "status")
			if v, ok := spec["version"].(string); ok && spec["versions"] == nil {
				s.CRD = append(s.CRD, fmt.Sprintf("%s served=true storage=true status=%t", v, topStatus))
			}
			for _, v := range anyList(spec["versions"]) {
				m := v.(map[string]any)
				_, status := dig(m, "subresources", "status")
				s.CRD = append(s.CRD, fmt.Sprintf("%s served=%v storage=%v status=%t", m["name"], m["served"], m["storage"], status || topStatus))
			}
		case "Deployment":
			s.Deployment = deploymentShape(o)
		}
	}
	sort.Strings(s.Objects)
	return s
}

// deploymentShape flattens the Deployment, dropping what is cosmetic or
// differs by build: digests, resource figures, annotations' values.
func deploymentShape(o map[string]any) []string {
	lines := strings.Split(flatten("", o), "\n")
	out := lines[:0]
	for _, l := range lines {
		switch {
		case strings.Contains(l, "sha256:"):
			l = l[:strings.Index(l, "sha256:")] + "sha256:…"
		case strings.Contains(l, ".resources.requests."):
			l = l[:strings.LastIndex(l, "=")] + "=…"
		}
		out = append(out, l)
	}
	return slices.Clone(out)
}

// flatten renders v as sorted path=value lines.
func flatten(prefix string, v any) string {
	var lines []string
	var walk func(string, any)
	walk = func(p string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				lines = append(lines, p+"={}")
			}
			for k, e := range x {
				walk(p+"."+k, e)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", p, i), e)
			}
		default:
			lines = append(lines, fmt.Sprintf("%s=%v", p, x))
		}
	}
	walk(prefix, v)
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func dig(m map[string]any, path ...string) (any, bool) {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func anyList(v any) []any { l, _ := v.([]any); return l }

func str(v any) string { s, _ := v.(string); return s }
