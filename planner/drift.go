package planner

import (
	"fmt"

	"github.com/kvgitops/kvgitops/redact"
)

// Applied is what kvgitops last left the cluster running, as observed right
// after its plan finished: the fields drift is measured on. It is recorded
// with the digest of the desired content it fulfilled.
type Applied struct {
	Digest        string `yaml:"digest" json:"digest"`
	Version       string `yaml:"version,omitempty" json:"version,omitempty"`
	ImageTag      string `yaml:"imageTag,omitempty" json:"imageTag,omitempty"`
	ImageRegistry string `yaml:"imageRegistry,omitempty" json:"imageRegistry,omitempty"`
	OperatorImage string `yaml:"operatorImage,omitempty" json:"operatorImage,omitempty"`
}

// AppliedFrom records o as fulfilling the desired content of digest.
func AppliedFrom(digest string, o Observed) Applied {
	return Applied{Digest: digest, Version: o.Installed, ImageTag: o.ImageTag, ImageRegistry: o.ImageRegistry, OperatorImage: o.OperatorImage}
}

// Difference is one field changed outside kvgitops.
type Difference struct {
	Field    string `yaml:"field" json:"field"`
	Applied  string `yaml:"applied" json:"applied"`
	Observed string `yaml:"observed" json:"observed"`
}

func (d Difference) String() string {
	return fmt.Sprintf("%s %s (kvgitops left %s)", d.Field, redact.QuoteOrUnset(d.Observed), redact.QuoteOrUnset(d.Applied))
}

// DriftFrom lists what differs in o from what kvgitops applied.
func (a Applied) DriftFrom(o Observed) []Difference {
	var out []Difference
	for _, f := range []struct{ field, applied, observed string }{
		{"observedKubeVirtVersion", a.Version, o.Installed},
		{"spec.imageTag", a.ImageTag, o.ImageTag},
		{"spec.imageRegistry", a.ImageRegistry, o.ImageRegistry},
		{"virt-operator image", a.OperatorImage, o.OperatorImage},
	} {
		if f.applied != f.observed {
			out = append(out, Difference{Field: f.field, Applied: f.applied, Observed: f.observed})
		}
	}
	return out
}
