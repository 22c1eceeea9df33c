package planner

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/kvgitops/kvgitops/redact"
)

// Severity says what a known upgrade risk does to a hop that crosses it.
type Severity string

// Severities.
const (
	// SeverityBlocks: the hop fails, or workloads cannot run, when the risk's
	// condition holds. Refused unless accepted by name; an unconditional one
	// is planned around where another supported path exists.
	SeverityBlocks Severity = "Blocks"
	// SeverityRisky: the hop can degrade or disrupt workloads: a warning.
	SeverityRisky Severity = "Risky"
)

// VersionRange selects releases: the listed tags, or every release from Min
// (inclusive) to Below (exclusive); empty bounds are open, and a range with
// nothing set is every release.
type VersionRange struct {
	Min   string   `json:"min,omitempty"`
	Below string   `json:"below,omitempty"`
	Tags  []string `json:"tags,omitempty"`

	min, below version // Min and Below parsed once (compile)
}

// compile parses the bounds, so matching a hop costs no parsing.
func (r *VersionRange) compile() {
	r.min, _ = parseTag(r.Min)
	r.below, _ = parseTag(r.Below)
}

// has reports whether the release v (tag, parsed; zero when the tag does
// not parse) is in the range.
func (r VersionRange) has(tag string, v version) bool {
	if len(r.Tags) > 0 {
		return slices.Contains(r.Tags, tag)
	}
	atLeast := func(b version) bool { return !v.isZero() && !b.isZero() && v.compare(b) >= 0 }
	return (r.Min == "" || atLeast(r.min)) && (r.Below == "" || !atLeast(r.below))
}

func (r VersionRange) bounded() bool { return r.Min != "" || r.Below != "" || len(r.Tags) > 0 }

// Risk is a known upgrade risk: a hop from a release in From to one in To
// (made by one of Methods, when set) meets it.
type Risk struct {
	ID       string
	From, To VersionRange
	Methods  []Method // empty: any method
	Severity Severity
	// When is the condition under which it bites, "" for always. A
	// conditional risk is a warning: the planner cannot check the
	// condition.
	When    string
	Summary string
	URL     string
	// Source says where the risk comes from: built in, or the repository's
	// risks file.
	Source string
}

func (r Risk) matches(s Step, from, to version) bool {
	switch {
	case s.Type == StepInstall:
		// An install meets the risks of its target that do not depend on
		// where a hop starts.
		if r.From.bounded() || !r.To.has(s.To, to) {
			return false
		}
	case s.Type != StepUpgrade || !r.From.has(s.From, from) || !r.To.has(s.To, to):
		return false
	}
	return len(r.Methods) == 0 || slices.ContainsFunc(r.Methods, s.Method.Meets)
}

// blocksAlways reports whether the risk refuses every hop that meets it.
func (r Risk) blocksAlways() bool { return r.Severity == SeverityBlocks && r.When == "" }

// RisksAPIVersion and RisksKind identify the repository's risks file.
const (
	RisksAPIVersion = "kvgitops.dev/v1alpha1"
	RisksKind       = "KubeVirtUpgradeRisks"
	// MaxRisksSize caps the risks file.
	MaxRisksSize = 64 << 10
)

var riskIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ParseRisks reads the repository's own risks file, strictly, as
// ParseDesired reads the desired file:
//
//	apiVersion: kvgitops.dev/v1alpha1
//	kind: KubeVirtUpgradeRisks
//	risks:
//	- id: ACME-12
//	  from: {min: v1.6.0, below: v1.7.0}
//	  to: {tags: [v1.7.0]}
//	  severity: Blocks
//	  when: ""                  # optional condition
//	  summary: our storage driver breaks on 1.7.0
//	  url: https://wiki.example.com/acme-12
func ParseRisks(data []byte) ([]Risk, error) {
	root, err := decodeSingleDocument(data, MaxRisksSize)
	if err != nil {
		return nil, err
	}
	var list *yaml.Node
	top := fields{
		"apiVersion": func(n *yaml.Node) error { return expectConst(n, "apiVersion", RisksAPIVersion) },
		"kind":       func(n *yaml.Node) error { return expectConst(n, "kind", RisksKind) },
		"risks":      func(n *yaml.Node) error { list = n; return nil },
	}
	if err := top.decode("", root, "apiVersion", "kind", "risks"); err != nil {
		return nil, err
	}
	if list.Kind != yaml.SequenceNode {
		return nil, &FieldError{Field: "risks", Line: list.Line, Problem: "must be a list, got " + kindName(list)}
	}
	var out []Risk
	for i, n := range list.Content {
		path := fmt.Sprintf("risks[%d]", i)
		r, err := decodeRisk(path, n)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(out, func(o Risk) bool { return o.ID == r.ID }) {
			return nil, fieldErr(n, path+".id", r.ID, "is used twice")
		}
		r.Source = "the repository's risks file"
		out = append(out, r)
	}
	return out, nil
}

func decodeRisk(path string, n *yaml.Node) (Risk, error) {
	var r Risk
	str := func(field string, out *string) func(*yaml.Node) error {
		return func(v *yaml.Node) error {
			s, err := scalarString(v, path+"."+field)
			*out = s
			return err
		}
	}
	f := fields{
		"id":       str("id", &r.ID),
		"from":     func(v *yaml.Node) error { return decodeRange(path+".from", v, &r.From) },
		"to":       func(v *yaml.Node) error { return decodeRange(path+".to", v, &r.To) },
		"severity": func(v *yaml.Node) error { return enum(v, path+".severity", &r.Severity, SeverityBlocks, SeverityRisky) },
		"when":     str("when", &r.When),
		"summary":  str("summary", &r.Summary),
		"url":      str("url", &r.URL),
	}
	if err := f.decode(path, n, "id", "to", "severity", "summary"); err != nil {
		return r, err
	}
	if !riskIDPattern.MatchString(r.ID) {
		return r, fieldErr(n, path+".id", r.ID, "must be letters, digits, '.', '_' or '-' (at most 63)")
	}
	if len(r.Summary) > 1000 || len(r.When) > 500 {
		return r, &FieldError{Field: path, Line: n.Line, Problem: "summary (1000) or when (500) is too long"}
	}
	if r.URL != "" {
		if u, err := url.Parse(r.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			return r, fieldErr(n, path+".url", r.URL, "must be an https URL")
		}
	}
	r.Summary, r.When = redact.Text(r.Summary, 1000), redact.Text(r.When, 500)
	return r, nil
}

func decodeRange(path string, n *yaml.Node, out *VersionRange) error {
	tag := func(field string, dst *string) func(*yaml.Node) error {
		return func(v *yaml.Node) error {
			s, err := scalarString(v, path+"."+field)
			if err == nil && !ValidTag(s) {
				return fieldErr(v, path+"."+field, s, "not a release tag (vMAJOR.MINOR.PATCH)")
			}
			*dst = s
			return err
		}
	}
	f := fields{
		"min":   tag("min", &out.Min),
		"below": tag("below", &out.Below),
		"tags": func(v *yaml.Node) error {
			if v.Kind != yaml.SequenceNode {
				return &FieldError{Field: path + ".tags", Line: v.Line, Problem: "must be a list, got " + kindName(v)}
			}
			for i, t := range v.Content {
				s, err := scalarString(t, fmt.Sprintf("%s.tags[%d]", path, i))
				if err != nil {
					return err
				}
				if !ValidTag(s) {
					return fieldErr(t, fmt.Sprintf("%s.tags[%d]", path, i), s, "not a release tag (vMAJOR.MINOR.PATCH)")
				}
				out.Tags = append(out.Tags, s)
			}
			return nil
		},
	}
	if err := f.decode(path, n); err != nil {
		return err
	}
	if len(out.Tags) > 0 && (out.Min != "" || out.Below != "") {
		return &FieldError{Field: path, Line: n.Line, Problem: "lists tags or gives min/below, not both"}
	}
	out.compile()
	return nil
}

// risksFor lists the risks a step meets, built in and the repository's.
func risksFor(s Step, extra []Risk) []Risk {
	from, _ := parseTag(s.From)
	to, _ := parseTag(s.To)
	var out []Risk
	for _, list := range [][]Risk{builtinRisks, extra} {
		for _, r := range list {
			if r.matches(s, from, to) {
				out = append(out, r)
			}
		}
	}
	return out
}

// blockedHop reports whether a hop to tag meets an unconditional blocker
// that is not accepted.
func blockedHop(s Step, extra []Risk, accepted []string) (Risk, bool) {
	for _, r := range risksFor(s, extra) {
		if r.blocksAlways() && !slices.Contains(accepted, r.ID) {
			return r, true
		}
	}
	return Risk{}, false
}

// BuiltinRisks lists the risks kvgitops knows (docs/upgrade-safety.md).
func BuiltinRisks() []Risk { return slices.Clone(builtinRisks) }
