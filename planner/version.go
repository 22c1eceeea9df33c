package planner

import (
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"

	"github.com/Masterminds/semver/v3"
)

// tagPattern is the exact shape of a KubeVirt release tag (docs/architecture.md, "Releases").
var tagPattern = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.]+)?$`)

// version is a parsed release tag. The zero value is "no version".
type version struct {
	tag string
	sv  *semver.Version
}

// parseTag accepts exactly the tag pattern and a strict semver pre-release
// (no empty identifiers, no leading zeros in numeric ones).
func parseTag(tag string) (version, error) {
	if v, ok := parsedTags.Load(tag); ok {
		return v.(version), nil
	}
	if len(tag) > 64 || !tagPattern.MatchString(tag) {
		return version{}, fmt.Errorf("not a release tag of the form vMAJOR.MINOR.PATCH[-PRERELEASE]")
	}
	sv, err := semver.StrictNewVersion(tag[1:])
	if err != nil {
		return version{}, fmt.Errorf("not a valid semantic version")
	}
	v := version{tag: tag, sv: sv}
	if parsedCount.Add(1) <= maxParsedTags {
		parsedTags.Store(tag, v)
	}
	return v, nil
}

// parsedTags remembers valid tags already parsed (semver versions are
// immutable), up to maxParsedTags: a plan's checks look at each hop's
// releases many times; KubeVirt has a few hundred tags, and input that
// invents more only stops being remembered.
var (
	parsedTags    sync.Map
	parsedCount   atomic.Int64
	maxParsedTags int64 = 4096
)

// ValidTag reports whether s is a release tag kvgitops accepts.
func ValidTag(s string) bool {
	_, err := parseTag(s)
	return err == nil
}

func (v version) isZero() bool     { return v.sv == nil }
func (v version) prerelease() bool { return v.sv.Prerelease() != "" }
func (v version) line() line       { return line{major: v.sv.Major(), minor: v.sv.Minor()} }

// compare orders versions by semver precedence.
func (v version) compare(o version) int { return v.sv.Compare(o.sv) }

// line is a (major, minor) release line.
type line struct{ major, minor uint64 }

func (l line) less(o line) bool {
	if l.major != o.major {
		return l.major < o.major
	}
	return l.minor < o.minor
}

func (l line) String() string { return fmt.Sprintf("v%d.%d", l.major, l.minor) }

// next reports whether o is the line that directly follows l in KubeVirt's
// update path: the next minor of the same major, or minor 0 of the next major
// (v0.59 → v1.0).
func (l line) next(o line) bool {
	if o.major == l.major {
		return o.minor == l.minor+1
	}
	return o.major == l.major+1 && o.minor == 0
}

// firstRollingLine is the oldest line with zero-downtime updates.
var firstRollingLine = line{major: 0, minor: 17}

// TagAtLeast reports whether tag is min or later by semver precedence
// (pre-releases of min sort below it). A tag that is not a release tag is
// at least nothing.
func TagAtLeast(tag, min string) bool {
	v, err := parseTag(tag)
	if err != nil {
		return false
	}
	m, err := parseTag(min)
	if err != nil {
		return false
	}
	return v.compare(m) >= 0
}
