package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kvgitops/kvgitops/redact"
)

// KubeVirtConfig is spec.kubevirtConfig: the KubeVirt CR settings platform
// teams set, written in the CR's own shape (a strict subset of its spec).
// kvgitops applies them with server-side apply as field manager kvgitops
// (docs/spec/desired.md, "kubevirtConfig").
type KubeVirtConfig struct {
	spec map[string]any // the CR spec fields it sets, as JSON would decode them
}

// DefaultWorkloadUpdateMethods is what kvgitops sets when it creates the
// CR, or applies a kubevirtConfig without workloadUpdateMethods (HCO's
// default): running VMIs follow a hop by live migration.
var DefaultWorkloadUpdateMethods = []string{"LiveMigrate"}

// InstallConfig is the configuration a CR kvgitops creates gets: c, or the
// default.
func InstallConfig(c *KubeVirtConfig) *KubeVirtConfig {
	if c != nil {
		return c
	}
	return &KubeVirtConfig{spec: map[string]any{"workloadUpdateStrategy": map[string]any{"workloadUpdateMethods": toAny(DefaultWorkloadUpdateMethods)}}}
}

// Spec returns the CR spec fields to apply (a copy).
func (c *KubeVirtConfig) Spec() map[string]any {
	var out map[string]any
	b, _ := json.Marshal(c.spec)
	_ = json.Unmarshal(b, &out)
	return out
}

// Digest identifies the configuration.
func (c *KubeVirtConfig) Digest() string {
	b, _ := json.Marshal(c.spec) // maps marshal with sorted keys
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}

// FeatureGates are the gates it sets, and whether it sets them.
func (c *KubeVirtConfig) FeatureGates() ([]string, bool) {
	v, ok := lookup(c.spec, "configuration", "developerConfiguration", "featureGates")
	return fromAny(v), ok
}

// Settings overlays what it sets on base.
func (c *KubeVirtConfig) Settings(base WorkloadSettings) WorkloadSettings {
	s := base
	if v, ok := lookup(c.spec, "workloadUpdateStrategy", "workloadUpdateMethods"); ok {
		s.Methods = fromAny(v)
	}
	if v, ok := lookup(c.spec, "configuration", "evictionStrategy"); ok {
		s.EvictionStrategy, _ = v.(string)
	}
	setInt(&s.BatchEvictionSize, c.spec, "workloadUpdateStrategy", "batchEvictionSize")
	if v, ok := lookup(c.spec, "workloadUpdateStrategy", "batchEvictionInterval"); ok {
		s.BatchEvictionInterval, _ = time.ParseDuration(v.(string))
	}
	setInt(&s.ParallelMigrationsPerCluster, c.spec, "configuration", "migrations", "parallelMigrationsPerCluster")
	setInt(&s.ParallelOutboundMigrationsPerNode, c.spec, "configuration", "migrations", "parallelOutboundMigrationsPerNode")
	return s
}

func setInt(out *int, m map[string]any, path ...string) {
	if v, ok := lookup(m, path...); ok {
		n, _ := v.(int64)
		*out = int(n)
	}
}

// Differences lists the fields it sets whose value in the CR's spec
// (observed, as the CR holds it) differs.
func (c *KubeVirtConfig) Differences(observed map[string]any) []Difference {
	var out []Difference
	walkLeaves(c.spec, nil, func(path []string, want any) {
		got, _ := lookup(observed, path...)
		if !sameValue(path, want, got) {
			out = append(out, Difference{Field: "spec." + strings.Join(path, "."), Applied: render(want), Observed: render(got)})
		}
	})
	return out
}

// walkLeaves calls f for every value that is not a mapping, sorted by path.
func walkLeaves(m map[string]any, prefix []string, f func([]string, any)) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := append(slices.Clone(prefix), k)
		if sub, ok := m[k].(map[string]any); ok && k != "nodeSelector" && k != "obsoleteCPUModels" {
			walkLeaves(sub, path, f)
			continue
		}
		f(path, m[k])
	}
}

func lookup(m map[string]any, path ...string) (any, bool) {
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

// sameValue compares as the CR would hold them: numbers by value,
// durations parsed, everything else by its JSON.
func sameValue(path []string, want, got any) bool {
	// Every list of KubeVirt's spec is `omitempty` in its Go types:
	// virt-operator's typed update of the CR (its first pass) drops an
	// empty one, and KubeVirt reads absent as empty (docs/kubevirt.md,
	// "The CR's spec").
	if l, ok := want.([]any); ok && len(l) == 0 && got == nil {
		return true
	}
	if path[len(path)-1] == "batchEvictionInterval" {
		w, _ := want.(string)
		g, _ := got.(string)
		wd, err1 := time.ParseDuration(w)
		gd, err2 := time.ParseDuration(g)
		return err1 == nil && err2 == nil && wd == gd
	}
	return render(want) == render(got)
}

func render(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return redact.Text(string(b), 200)
}

func toAny(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

func fromAny(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// Bounds of a kubevirtConfig.
const (
	maxFeatureGates = 100
	maxCPUModels    = 200
	maxSelectorKeys = 20
	maxTolerations  = 20
)

var (
	gateName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{0,63}$`)
	// cpuModelName: libvirt's CPU model names (486, kvm64, EPYC-Rome,
	// Skylake-Client-noTSX-IBRS, Opteron_G5, pentium3, …).
	cpuModelName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	labelKey     = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValue   = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
	quantity     = regexp.MustCompile(`^[0-9]{1,12}(Ki|Mi|Gi|Ti|k|M|G|T)?$`)
)

// decodeKubeVirtConfig reads spec.kubevirtConfig strictly: only the fields
// below, each checked; workloadUpdateMethods defaults to LiveMigrate.
func decodeKubeVirtConfig(n *yaml.Node) (*KubeVirtConfig, error) {
	const p = "spec.kubevirtConfig"
	spec := map[string]any{}
	f := fields{
		"workloadUpdateStrategy": into(spec, "workloadUpdateStrategy", func(n *yaml.Node, out map[string]any) error {
			return fields{
				"workloadUpdateMethods": func(v *yaml.Node) error {
					return stringList(v, p+".workloadUpdateStrategy.workloadUpdateMethods", 2, out, "workloadUpdateMethods", enumOf("LiveMigrate", "Evict"))
				},
				"batchEvictionSize": func(v *yaml.Node) error {
					return intField(v, p+".workloadUpdateStrategy.batchEvictionSize", 1, 1000, out, "batchEvictionSize")
				},
				"batchEvictionInterval": func(v *yaml.Node) error {
					var d time.Duration
					if err := duration(v, p+".workloadUpdateStrategy.batchEvictionInterval", 24*time.Hour, &d); err != nil {
						return err
					}
					out["batchEvictionInterval"] = d.String()
					return nil
				},
			}.decode(p+".workloadUpdateStrategy", n)
		}),
		"configuration": into(spec, "configuration", decodeConfiguration),
		"infra":         into(spec, "infra", placementDecoder(p+".infra", true)),
		"workloads":     into(spec, "workloads", placementDecoder(p+".workloads", false)),
	}
	if err := f.decode(p, n); err != nil {
		return nil, err
	}
	if _, ok := lookup(spec, "workloadUpdateStrategy", "workloadUpdateMethods"); !ok {
		wus, _ := spec["workloadUpdateStrategy"].(map[string]any)
		if wus == nil {
			wus = map[string]any{}
			spec["workloadUpdateStrategy"] = wus
		}
		wus["workloadUpdateMethods"] = toAny(DefaultWorkloadUpdateMethods)
	}
	return &KubeVirtConfig{spec: spec}, nil
}

// into decodes a mapping into m[key].
func into(m map[string]any, key string, dec func(*yaml.Node, map[string]any) error) func(*yaml.Node) error {
	return func(n *yaml.Node) error {
		out := map[string]any{}
		if err := dec(n, out); err != nil {
			return err
		}
		m[key] = out
		return nil
	}
}

func decodeConfiguration(n *yaml.Node, out map[string]any) error {
	const p = "spec.kubevirtConfig.configuration"
	return fields{
		"developerConfiguration": into(out, "developerConfiguration", func(n *yaml.Node, dev map[string]any) error {
			return fields{
				"featureGates": func(v *yaml.Node) error {
					return stringList(v, p+".developerConfiguration.featureGates", maxFeatureGates, dev, "featureGates", func(s string) string {
						if !gateName.MatchString(s) {
							return "not a feature gate name (letters and digits)"
						}
						return ""
					})
				},
				// Software emulation (qemu TCG) where nodes have no
				// hardware virtualization: nested clouds, CI. KubeVirt
				// reads it when it starts a VMI; running ones keep
				// theirs.
				"useEmulation": func(v *yaml.Node) error {
					var b bool
					if err := scalarBool(v, p+".developerConfiguration.useEmulation", &b); err != nil {
						return err
					}
					dev["useEmulation"] = b
					return nil
				},
			}.decode(p+".developerConfiguration", n)
		}),
		"evictionStrategy": func(v *yaml.Node) error {
			var s string
			if err := enum(v, p+".evictionStrategy", &s, "None", "LiveMigrate", "LiveMigrateIfPossible", "External"); err != nil {
				return err
			}
			out["evictionStrategy"] = s
			return nil
		},
		"migrations":        into(out, "migrations", decodeMigrations),
		"obsoleteCPUModels": func(v *yaml.Node) error { return cpuModelSet(v, p+".obsoleteCPUModels", out) },
	}.decode(p, n)
}

// cpuModelSet reads configuration.obsoleteCPUModels: the CPU models
// KubeVirt's node labeller leaves out of a node's model labels (KubeVirt
// keeps its own list when the field is absent; the list replaces it). A
// VMI whose host-model is one of them cannot be live-migrated: nested
// clouds whose KVM reports kvm64 need it shorter. An empty mapping is
// refused: KubeVirt drops it and keeps its default, which is not what it
// says.
func cpuModelSet(n *yaml.Node, field string, out map[string]any) error {
	if n.Kind == yaml.MappingNode && len(n.Content) == 0 {
		return &FieldError{Field: field, Line: n.Line, Problem: "is empty: KubeVirt would keep its default list; omit the field for that"}
	}
	m, err := keyedMap(n, field, maxCPUModels, func(model string) string {
		if !cpuModelName.MatchString(model) {
			return "not a CPU model name (letters, digits, '-', '_', '.')"
		}
		return ""
	}, func(v *yaml.Node, at string) (any, error) {
		var b bool
		err := scalarBool(v, at, &b)
		return b, err
	})
	if err != nil {
		return err
	}
	out["obsoleteCPUModels"] = m
	return nil
}

func decodeMigrations(n *yaml.Node, out map[string]any) error {
	const p = "spec.kubevirtConfig.configuration.migrations"
	ints := func(name string, lo, hi int) func(*yaml.Node) error {
		return func(v *yaml.Node) error { return intField(v, p+"."+name, lo, hi, out, name) }
	}
	bools := func(name string) func(*yaml.Node) error {
		return func(v *yaml.Node) error {
			var b bool
			if err := scalarBool(v, p+"."+name, &b); err != nil {
				return err
			}
			out[name] = b
			return nil
		}
	}
	return fields{
		"parallelMigrationsPerCluster":      ints("parallelMigrationsPerCluster", 1, 1000),
		"parallelOutboundMigrationsPerNode": ints("parallelOutboundMigrationsPerNode", 1, 100),
		"completionTimeoutPerGiB":           ints("completionTimeoutPerGiB", 1, 100000),
		"progressTimeout":                   ints("progressTimeout", 1, 100000),
		"allowAutoConverge":                 bools("allowAutoConverge"),
		"allowPostCopy":                     bools("allowPostCopy"),
		"bandwidthPerMigration": func(v *yaml.Node) error {
			s, err := scalarString(v, p+".bandwidthPerMigration")
			if err != nil {
				return err
			}
			if !quantity.MatchString(s) {
				return fieldErr(v, p+".bandwidthPerMigration", s, "not a quantity (64Mi, 1Gi)")
			}
			out["bandwidthPerMigration"] = s
			return nil
		},
	}.decode(p, n)
}

// placementDecoder reads infra or workloads: nodePlacement (nodeSelector,
// tolerations) and, for infra, replicas.
func placementDecoder(p string, infra bool) func(*yaml.Node, map[string]any) error {
	return func(n *yaml.Node, out map[string]any) error {
		f := fields{"nodePlacement": into(out, "nodePlacement", func(n *yaml.Node, np map[string]any) error {
			return fields{
				"nodeSelector": func(v *yaml.Node) error { return labelMap(v, p+".nodePlacement.nodeSelector", np) },
				"tolerations":  func(v *yaml.Node) error { return tolerations(v, p+".nodePlacement.tolerations", np) },
			}.decode(p+".nodePlacement", n)
		})}
		if infra {
			f["replicas"] = func(v *yaml.Node) error { return intField(v, p+".replicas", 1, 10, out, "replicas") }
		}
		return f.decode(p, n)
	}
}

func labelMap(n *yaml.Node, field string, out map[string]any) error {
	m, err := keyedMap(n, field, maxSelectorKeys, func(key string) string {
		if !labelKey.MatchString(key) {
			return "not a label key"
		}
		return ""
	}, func(v *yaml.Node, at string) (any, error) {
		val, err := scalarString(v, at)
		if err == nil && !labelValue.MatchString(val) {
			return nil, fieldErr(v, at, val, "not a label value")
		}
		return val, err
	})
	if err != nil {
		return err
	}
	out["nodeSelector"] = m
	return nil
}

// keyedMap reads a mapping of at most maxKeys unique keys, each passing
// keyProblem (which says what is wrong, or ""), each value read by value
// at field.key.
func keyedMap(n *yaml.Node, field string, maxKeys int, keyProblem func(string) string, value func(v *yaml.Node, at string) (any, error)) (map[string]any, error) {
	if n.Kind != yaml.MappingNode {
		return nil, &FieldError{Field: field, Line: n.Line, Problem: "must be a mapping, got " + kindName(n)}
	}
	if len(n.Content)/2 > maxKeys {
		return nil, &FieldError{Field: field, Line: n.Line, Problem: fmt.Sprintf("has more than %d keys", maxKeys)}
	}
	m := map[string]any{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key, err := scalarString(k, field)
		if err != nil {
			return nil, err
		}
		if problem := keyProblem(key); problem != "" {
			return nil, fieldErr(k, field, key, problem)
		}
		if _, dup := m[key]; dup {
			return nil, fieldErr(k, field+"."+key, key, "is set more than once")
		}
		if m[key], err = value(v, field+"."+key); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func tolerations(n *yaml.Node, field string, out map[string]any) error {
	if n.Kind != yaml.SequenceNode || len(n.Content) > maxTolerations {
		return &FieldError{Field: field, Line: n.Line, Problem: fmt.Sprintf("must be a list of at most %d tolerations", maxTolerations)}
	}
	var list []any
	for i, item := range n.Content {
		t := map[string]any{}
		at := fmt.Sprintf("%s[%d]", field, i)
		str := func(name string, check func(string) string) func(*yaml.Node) error {
			return func(v *yaml.Node) error {
				s, err := scalarString(v, at+"."+name)
				if err != nil {
					return err
				}
				if problem := check(s); problem != "" {
					return fieldErr(v, at+"."+name, s, problem)
				}
				t[name] = s
				return nil
			}
		}
		err := fields{
			"key":      str("key", matching(labelKey, "not a label key")),
			"operator": str("operator", enumOf("Exists", "Equal")),
			"value":    str("value", matching(labelValue, "not a label value")),
			"effect":   str("effect", enumOf("NoSchedule", "PreferNoSchedule", "NoExecute")),
			"tolerationSeconds": func(v *yaml.Node) error {
				return intField(v, at+".tolerationSeconds", 0, 86400*365, t, "tolerationSeconds")
			},
		}.decode(at, item)
		if err != nil {
			return err
		}
		list = append(list, t)
	}
	out["tolerations"] = list
	return nil
}

// matching accepts "" and what re matches.
func matching(re *regexp.Regexp, problem string) func(string) string {
	return func(s string) string {
		if s == "" || re.MatchString(s) {
			return ""
		}
		return problem
	}
}

func enumOf(allowed ...string) func(string) string {
	return func(s string) string {
		if slices.Contains(allowed, s) {
			return ""
		}
		return "must be one of " + strings.Join(allowed, ", ")
	}
}

// stringList reads a list of unique strings, each passing check.
func stringList(n *yaml.Node, field string, maxItems int, out map[string]any, key string, check func(string) string) error {
	if n.Kind != yaml.SequenceNode {
		return &FieldError{Field: field, Line: n.Line, Problem: "must be a list, got " + kindName(n)}
	}
	if len(n.Content) > maxItems {
		return &FieldError{Field: field, Line: n.Line, Problem: fmt.Sprintf("has %d items, more than %d", len(n.Content), maxItems)}
	}
	list := []any{}
	for i, item := range n.Content {
		at := fmt.Sprintf("%s[%d]", field, i)
		s, err := scalarString(item, at)
		if err != nil {
			return err
		}
		if problem := check(s); problem != "" {
			return fieldErr(item, at, s, problem)
		}
		if slices.Contains(list, any(s)) {
			return fieldErr(item, at, s, "is listed twice")
		}
		list = append(list, s)
	}
	out[key] = list
	return nil
}

// intField reads an integer in [lo, hi].
func intField(n *yaml.Node, field string, lo, hi int, out map[string]any, key string) error {
	var v int
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		return &FieldError{Field: field, Line: n.Line, Problem: "must be a whole number, got " + kindName(n)}
	}
	if v < lo || v > hi {
		return fieldErr(n, field, n.Value, fmt.Sprintf("must be between %d and %d", lo, hi))
	}
	out[key] = int64(v)
	return nil
}
