package simulator

import (
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/kvgitops/kvgitops/test/releases"
)

var atLeast = releases.AtLeast

// finalizerFor is the CR finalizer of an operator version (FACTS.md §2.1).
func finalizerFor(op string) string {
	if atLeast(op, "v1.9.0-alpha.0") {
		return "kubevirt.io/foregroundDeleteKubeVirt"
	}
	return "foregroundDeleteKubeVirt"
}

const bareFinalizer = "foregroundDeleteKubeVirt"

// operatorVersionField is what status.operatorVersion says: before v1.1.0
// the build stamp was missing (FACTS.md §1.4, PR #9590).
func operatorVersionField(op string) string {
	if atLeast(op, "v1.1.0-alpha.0") {
		return op
	}
	return "v0.0.0-master+$Format:%h$"
}

// strategyVersion is the release whose install strategy (and so whose
// component RBAC) a hop to target writes. From v0.58.1 through v1.6.x the
// strategy Job ran the current operator image (FACTS.md §4.1).
func strategyVersion(op, target string) string {
	if atLeast(op, "v0.58.1") && !atLeast(op, "v1.7.0-rc.1") {
		return op
	}
	return target
}

// leavesLeftovers: operators up to v0.26.0 neither tracked nor deleted the
// APIService and webhooks virt-api created (FACTS.md §6).
func leavesLeftovers(op string) bool { return !atLeast(op, "v0.26.1") }

// pathRules checks a hop against KubeVirt's supported update path: only
// N-1 → N, from the latest patch of N-1, never down.
type pathRules struct {
	latest map[[2]uint64]*semver.Version // latest stable per line
	lines  [][2]uint64                   // stable lines, ascending
}

func newPathRules(tags []string) pathRules {
	r := pathRules{latest: map[[2]uint64]*semver.Version{}}
	for _, t := range tags {
		v, err := semver.NewVersion(t)
		if err != nil || v.Prerelease() != "" {
			continue
		}
		l := [2]uint64{v.Major(), v.Minor()}
		if old, ok := r.latest[l]; !ok || v.GreaterThan(old) {
			if !ok {
				r.lines = append(r.lines, l)
			}
			r.latest[l] = v
		}
	}
	sort.Slice(r.lines, func(i, j int) bool {
		a, b := r.lines[i], r.lines[j]
		return a[0] < b[0] || a[0] == b[0] && a[1] < b[1]
	})
	return r
}

// check returns why a hop from → to breaks KubeVirt, "" when it is fine.
func (r pathRules) check(from, to string) string {
	if from == "" || from == to {
		return ""
	}
	f, err1 := semver.NewVersion(from)
	t, err2 := semver.NewVersion(to)
	if err1 != nil || err2 != nil {
		return "" // not semver: the real operator takes the update path
	}
	if t.LessThan(f) {
		return "simulated failure: downgrade from " + from + " to " + to + " is not supported"
	}
	fl, tl := [2]uint64{f.Major(), f.Minor()}, [2]uint64{t.Major(), t.Minor()}
	if fl == tl {
		return ""
	}
	next, ok := r.nextLine(fl)
	lineOK := ok && (tl == next || t.Prerelease() != "" && lineLess(fl, tl) && lineLess(tl, next))
	if !lineOK {
		return "simulated failure: update from " + from + " to " + to + " skips a minor release; KubeVirt supports updates from N-1 to N only"
	}
	if l := r.latest[fl]; l != nil && !f.Equal(l) {
		return "simulated failure: update from " + from + " to " + to + " does not start from the latest patch of its minor (v" + l.String() + ")"
	}
	return ""
}

func (r pathRules) nextLine(l [2]uint64) ([2]uint64, bool) {
	for _, c := range r.lines {
		if lineLess(l, c) {
			return c, true
		}
	}
	return [2]uint64{}, false
}

func lineLess(a, b [2]uint64) bool { return a[0] < b[0] || a[0] == b[0] && a[1] < b[1] }

// versionOfDeployment reads the operator version from its image: the tag,
// or KUBEVIRT_VERSION when the image is a digest, else "latest"
// (FACTS.md §1.4).
func versionOfImage(image string, env map[string]string) (version, registry string) {
	name := image
	if i := strings.Index(name, "@"); i >= 0 {
		registry = registryOf(name[:i])
		if v := env["KUBEVIRT_VERSION"]; v != "" {
			return v, registry
		}
		return "latest", registry
	}
	slash := strings.LastIndex(name, "/")
	if colon := strings.LastIndex(name, ":"); colon > slash {
		return name[colon+1:], registryOf(name[:colon])
	}
	if v := env["KUBEVIRT_VERSION"]; v != "" {
		return v, registryOf(name)
	}
	return "latest", registryOf(name)
}

func registryOf(repo string) string {
	if i := strings.LastIndex(repo, "/"); i >= 0 {
		return repo[:i]
	}
	return ""
}
