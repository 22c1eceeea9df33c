package planner

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decodeMaxParallel reads a ring's maxParallel: a count (≥ 1) or a share
// of the ring's clusters ("25%", 1–100).
func (r *Ring) decodeMaxParallel(n *yaml.Node, field string) error {
	s, err := scalarCount(n, field)
	if err != nil {
		return err
	}
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		p, err := strconv.Atoi(pct)
		if err != nil || p < 1 || p > 100 {
			return fieldErr(n, field, s, "a share must be 1% to 100%")
		}
		r.MaxParallelPercent = p
		return nil
	}
	c, err := strconv.Atoi(s)
	if err != nil || c < 1 || c > maxFleetClusters {
		return fieldErr(n, field, s, fmt.Sprintf("must be a count from 1 to %d or a share such as 25%%", maxFleetClusters))
	}
	r.MaxParallel = c
	return nil
}

// scalarCount is a scalar written as a number or a string ("25%").
func scalarCount(n *yaml.Node, field string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" && n.Tag != "!!str" {
		return "", &FieldError{Field: field, Line: n.Line, Problem: "must be a number, got " + kindName(n)}
	}
	return n.Value, nil
}

// count reads a whole number from 0 to max.
func count(n *yaml.Node, field string, max int, out *int) error {
	s, err := scalarCount(n, field)
	if err != nil {
		return err
	}
	c, err := strconv.Atoi(s)
	if err != nil || c < 0 || c > max {
		return fieldErr(n, field, s, fmt.Sprintf("must be a count from 0 to %d", max))
	}
	*out = c
	return nil
}

// decodePromotions reads spec.promotions: ring name → release tag, each
// ring one with promotion Manual.
func (f *Fleet) decodePromotions(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return &FieldError{Field: "spec.promotions", Line: n.Line, Problem: "must be a mapping of ring name to version, got " + kindName(n)}
	}
	f.Promotions = map[string]string{}
	dec := fields{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		ring, field := k.Value, "spec.promotions."+k.Value
		dec[ring] = func(v *yaml.Node) error {
			r, ok := f.ring(ring)
			switch {
			case !ok:
				return fieldErr(k, "spec.promotions", ring, "names no ring")
			case r.Promotion != PromotionManual:
				return fieldErr(k, "spec.promotions", ring, "names a ring whose promotion is Automatic: only meaningful with promotion: Manual")
			}
			tag, err := scalarString(v, field)
			if err != nil {
				return err
			}
			if !ValidTag(tag) {
				return fieldErr(v, field, tag, "not a release tag such as v1.8.4: a promotion names the version the ring may go to")
			}
			f.Promotions[ring] = tag
			return nil
		}
	}
	return dec.decode("spec.promotions", n)
}

// ring is the ring of that name.
func (f *Fleet) ring(name string) (Ring, bool) {
	for _, r := range f.Rings {
		if r.Name == name {
			return r, true
		}
	}
	return Ring{}, false
}

// Parallel is how many of the ring's moving clusters may move at once
// (0: all of them), out of moving clusters in it.
func (r Ring) Parallel(moving int) int {
	switch {
	case r.MaxParallelPercent > 0:
		return max(1, int(math.Ceil(float64(moving)*float64(r.MaxParallelPercent)/100)))
	case r.MaxParallel > 0:
		return r.MaxParallel
	}
	return 0
}

// Controls says a ring's controls the way the fleet file writes them
// ("" when it has none): maxParallel, promotion, maxFailures.
func (r Ring) Controls() string {
	var parts []string
	switch {
	case r.MaxParallelPercent > 0:
		parts = append(parts, fmt.Sprintf("maxParallel %d%%", r.MaxParallelPercent))
	case r.MaxParallel > 0:
		parts = append(parts, fmt.Sprintf("maxParallel %d", r.MaxParallel))
	}
	if r.Promotion == PromotionManual {
		parts = append(parts, "promotion Manual")
	}
	if r.MaxFailures > 0 {
		parts = append(parts, fmt.Sprintf("maxFailures %d", r.MaxFailures))
	}
	return strings.Join(parts, ", ")
}
