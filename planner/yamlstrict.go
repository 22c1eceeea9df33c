package planner

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/kvgitops/kvgitops/redact"
)

// decodeSingleDocument checks the encoding and returns the one top-level
// mapping of a YAML document. It never expands aliases.
func decodeSingleDocument(data []byte, limit int) (*yaml.Node, error) {
	if len(data) > limit {
		return nil, &FieldError{Problem: fmt.Sprintf("is %d bytes, over the %d-byte limit", len(data), limit)}
	}
	data, err := checkEncoding(data)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Problem: "is empty"}
		}
		return nil, &FieldError{Problem: "is not valid YAML: " + yamlProblem(err)}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, &FieldError{Problem: "is not valid YAML: " + yamlProblem(err)}
	default:
		return nil, &FieldError{Line: extra.Line, Problem: "holds more than one YAML document; exactly one is allowed"}
	}
	if err := rejectAliases(&doc); err != nil {
		return nil, err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, &FieldError{Line: doc.Line, Problem: "must be a YAML mapping"}
	}
	return doc.Content[0], nil
}

// yamlProblem keeps the parser's message short and free of file content.
func yamlProblem(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if len(msg) > 120 {
		msg = msg[:120] + "…"
	}
	return msg
}

// checkEncoding accepts UTF-8 (dropping one leading byte-order mark) and
// rejects UTF-16, invalid UTF-8, control characters other than tab, CR and
// LF, and bidirectional-override characters (which hide text from review).
func checkEncoding(data []byte) ([]byte, error) {
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
	if bytes.HasPrefix(data, []byte{0xFE, 0xFF}) || bytes.HasPrefix(data, []byte{0xFF, 0xFE}) {
		return nil, &FieldError{Problem: "is UTF-16; save it as UTF-8"}
	}
	lineNo := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return nil, &FieldError{Line: lineNo, Problem: fmt.Sprintf("is not valid UTF-8 (byte %d)", i)}
		}
		if problem := badRune(r); problem != "" {
			return nil, &FieldError{Line: lineNo, Problem: problem}
		}
		if r == '\n' {
			lineNo++
		}
		i += size
	}
	return data, nil
}

// badRune says what is wrong with a character no desired file may hold.
func badRune(r rune) string {
	switch {
	case r == '\n' || r == '\t' || r == '\r':
		return ""
	case r < 0x20 || r == 0x7F || (r >= 0x80 && r <= 0x9F):
		return fmt.Sprintf("contains control character %U", r)
	case (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) || r == 0xFEFF:
		return fmt.Sprintf("contains invisible formatting character %U", r)
	}
	return ""
}

func rejectAliases(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return &FieldError{Line: n.Line, Problem: "uses YAML anchors or aliases, which are not allowed"}
	}
	for _, c := range n.Content {
		if err := rejectAliases(c); err != nil {
			return err
		}
	}
	return nil
}

// fields maps the keys of a mapping to their decoders.
type fields map[string]func(*yaml.Node) error

// decode walks a mapping: every key a plain string, no duplicates, no
// unknown keys, the required ones present. Keys are decoded in file order.
func (f fields) decode(path string, n *yaml.Node, required ...string) error {
	if n.Kind != yaml.MappingNode {
		return &FieldError{Field: path, Line: n.Line, Problem: "must be a mapping, got " + kindName(n)}
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			return &FieldError{Field: path, Line: k.Line, Problem: "has a key that is not a plain string"}
		}
		name := join(path, k.Value)
		if seen[k.Value] {
			return &FieldError{Field: name, Line: k.Line, Problem: "is set more than once"}
		}
		seen[k.Value] = true
		dec, ok := f[k.Value]
		if !ok {
			return &FieldError{Field: name, Line: k.Line, Problem: "is not a known field (known: " + f.names() + ")"}
		}
		if err := dec(v); err != nil {
			return err
		}
	}
	for _, r := range required {
		if !seen[r] {
			return &FieldError{Field: join(path, r), Line: n.Line, Problem: "is required"}
		}
	}
	return nil
}

func (f fields) names() string {
	names := make([]string, 0, len(f))
	for k := range f {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return strings.TrimPrefix(n.Tag, "!!") + " " + redact.Quote(n.Value)
	case yaml.DocumentNode, yaml.AliasNode: // aliases are refused before this; documents are unwrapped
	}
	return "something else"
}

func fieldErr(n *yaml.Node, field, value, problem string) error {
	return &FieldError{Field: field, Value: value, Line: n.Line, Problem: problem}
}

// scalarString requires a YAML string: quoted, or a plain scalar that YAML
// resolves to a string. 1.10, 0x1F, true and null are not strings.
func scalarString(n *yaml.Node, field string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return "", &FieldError{Field: field, Line: n.Line, Problem: "must be a string (quote it), got " + kindName(n)}
	}
	return n.Value, nil
}

func scalarBool(n *yaml.Node, field string, out *bool) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		return &FieldError{Field: field, Line: n.Line, Problem: "must be true or false, got " + kindName(n)}
	}
	*out = n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
	return nil
}

func enum[T ~string](n *yaml.Node, field string, out *T, allowed ...T) error {
	s, err := scalarString(n, field)
	if err != nil {
		return err
	}
	for _, a := range allowed {
		if string(a) == s {
			*out = a
			return nil
		}
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	return fieldErr(n, field, s, "must be one of "+strings.Join(names, ", "))
}

func expectConst(n *yaml.Node, field, want string) error {
	s, err := scalarString(n, field)
	if err != nil {
		return err
	}
	if s != want {
		return fieldErr(n, field, s, "must be "+want)
	}
	return nil
}

func duration(n *yaml.Node, field string, max time.Duration, out *time.Duration) error {
	s, err := scalarString(n, field)
	if err != nil {
		return err
	}
	d, perr := time.ParseDuration(s)
	switch {
	case perr != nil:
		return fieldErr(n, field, s, "not a duration (use units, e.g. 30m, 4h)")
	case d < minDuration:
		return fieldErr(n, field, s, "must be at least "+minDuration.String())
	case d > max:
		return fieldErr(n, field, s, "must be at most "+max.String())
	}
	*out = d
	return nil
}
