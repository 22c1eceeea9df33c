package simulator

import (
	"cmp"
	"regexp"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/kvgitops/kvgitops/test/releases"
)

var atLeast = releases.AtLeast

// finalizerFor is the CR finalizer of an operator version (docs/kubevirt.md, "Deletion").
func finalizerFor(op string) string {
	if atLeast(op, "v1.9.0-alpha.0") {
		return "kubevirt.io/foregroundDeleteKubeVirt"
	}
	return "foregroundDeleteKubeVirt"
}

const bareFinalizer = "foregroundDeleteKubeVirt"

// operatorVersionField is what status.operatorVersion says: before v1.1.0
// the build stamp was missing (docs/kubevirt.md, "The KubeVirt CR", PR #9590).
func operatorVersionField(op string) string {
	if atLeast(op, "v1.1.0-alpha.0") {
		return op
	}
	return "v0.0.0-master+$Format:%h$"
}

// strategyVersion is the release whose install strategy (its manifests and
// component RBAC) a hop to target writes. From v0.58.1 through v1.6.x and
// v1.7.0-rc.0 the strategy Job ran the running operator's image, whatever
// spec.imageTag said (docs/kubevirt.md, "The imageTag strategy bug", kubevirt#16050): the result is the
// operator's manifests with the target's images.
func strategyVersion(op, target string) string {
	if atLeast(op, "v0.58.1") && !atLeast(op, "v1.7.0-rc.1") {
		return op
	}
	return target
}

// readyBeforeObserved: from v1.9.0-rc.0 the operator copies observed* only
// once its readiness check passes; up to v1.8.x it copies them first, so
// for a while observed == target with Created=True and DeploymentInProgress
// (docs/kubevirt.md, "What done means"; the v1.9 fix f85a9748c7 is in
// v1.9.0-rc.0, not in alpha.0 or beta.0).
func readyBeforeObserved(op string) bool { return atLeast(op, "v1.9.0-rc.0") }

// removesOnlyOwnFinalizer: up to v1.8.x the operator sets the CR's
// finalizers to nil when deletion completes, taking any other finalizer
// with it; v1.9 removes only its own (docs/kubevirt.md, "Deletion").
func removesOnlyOwnFinalizer(op string) bool { return atLeast(op, "v1.9.0-alpha.0") }

// crdFinalizerDance: from v0.50 the operator puts its finalizer on the CRDs
// it deletes and waits for their instances to be gone (docs/kubevirt.md, "Deletion").
func crdFinalizerDance(op string) bool { return atLeast(op, "v0.50.0-alpha.0") }

// usesDeploymentID: from v0.20 the operator's target is a deployment id
// over the version, the registry and the string spec fields, and it writes
// target/observedDeploymentID and -Config (docs/kubevirt.md, "The KubeVirt CR").
func usesDeploymentID(op string) bool { return atLeast(op, "v0.20.0-alpha.0") }

// observedAPIVersions: from v0.20 the operator annotates the CR with the
// newest API version it serves (v1 from v0.37) and the one it stores (v1
// from v1.0).
func observedAPIVersions(op string) (latest, storage string, ok bool) {
	if !atLeast(op, "v0.20.0-alpha.0") {
		return "", "", false
	}
	latest, storage = "v1alpha3", "v1alpha3"
	if atLeast(op, "v0.37.0-rc.0") {
		latest = "v1"
	}
	if atLeast(op, "v1.0.0-beta.0") {
		storage = "v1"
	}
	return latest, storage, true
}

// reportsObservedGeneration: status.observedGeneration exists from v0.52.
func reportsObservedGeneration(op string) bool { return atLeast(op, "v0.52.0-rc.0") }

// hasWorkloadUpdates: the workload updater and
// status.outdatedVirtualMachineInstanceWorkloads exist from v0.39.
func hasWorkloadUpdates(op string) bool { return atLeast(op, "v0.39.0-alpha.0") }

// leavesLeftovers: operators up to v0.26.0 neither tracked nor deleted the
// APIService and webhooks virt-api created (docs/teardown.md).
func leavesLeftovers(op string) bool { return !atLeast(op, "v0.26.1") }

// pathRules knows KubeVirt's supported update path: only N-1 → N, from the
// latest patch of N-1, never down. The real operator enforces none of it
// (docs/kubevirt.md, "Supported update path": a lower version takes the create/rollback path, a skipped
// minor just rolls out), so the simulator executes every hop and records
// what breaks the rules as a violation for tests to assert on.
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

// violations says how a hop from → to breaks the supported path; none
// when it keeps it.
func (r pathRules) violations(from, to string) []string {
	if from == "" || from == to {
		return nil
	}
	f, err1 := semver.NewVersion(from)
	t, err2 := semver.NewVersion(to)
	if err1 != nil || err2 != nil {
		return nil // not semver: the real operator takes the update path
	}
	if t.LessThan(f) {
		return []string{"downgrade from " + from + " to " + to + " (KubeVirt does not support downgrades)"}
	}
	fl, tl := [2]uint64{f.Major(), f.Minor()}, [2]uint64{t.Major(), t.Minor()}
	if fl == tl {
		return nil
	}
	var out []string
	next, ok := r.nextLine(fl)
	if !ok || !(tl == next || t.Prerelease() != "" && lineLess(fl, tl) && lineLess(tl, next)) {
		out = append(out, "update from "+from+" to "+to+" skips a minor release (KubeVirt updates from N-1 to N only)")
	}
	if l := r.latest[fl]; l != nil && !f.Equal(l) {
		out = append(out, "update from "+from+" to "+to+" does not start from the latest patch of its minor (v"+l.String()+")")
	}
	return out
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

// operatorImage is what virt-operator reads from its own Deployment
// (util/config.go getConfig; docs/kubevirt.md, "How the operator reads its
// version"), written here independently of the product's reading.
type operatorImage struct {
	// image is VIRT_OPERATOR_IMAGE, else OPERATOR_IMAGE; "" and the
	// operator does not start (VerifyEnv).
	image string
	// binary is the release the image runs (its tag; by digest,
	// KUBEVIRT_VERSION): what decides the operator's behaviour.
	binary string
	// version and registry are what the operator installs when the CR
	// names neither (spec.imageTag, spec.imageRegistry).
	version, registry string
	// prefix is what stands before "virt-operator" in the image's name.
	prefix string
}

// operatorImageRe is virt-operator's own: the last path element must end
// in "virt-operator".
var operatorImageRe = regexp.MustCompile(`^(.*)/(.*)virt-operator([@:].*)?$`)

// readOperatorImage reads the operator's image as virt-operator does. An
// image whose name does not end in virt-operator yields an empty registry
// (component images become "/virt-api:…"), and KUBEVIRT_VERSION (else
// "latest") from v1.0, an empty version before; a digest yields
// KUBEVIRT_VERSION from v1.0, "latest" before unless every *_SHASUM and
// KUBEVIRT_VERSION are set; no tag is "latest".
func readOperatorImage(containerImage string, env map[string]string) operatorImage {
	o := operatorImage{image: env["VIRT_OPERATOR_IMAGE"]}
	if o.image == "" {
		o.image = env["OPERATOR_IMAGE"]
	}
	o.binary = binaryVersion(cmp.Or(o.image, containerImage), env["KUBEVIRT_VERSION"])
	kv := cmp.Or(env["KUBEVIRT_VERSION"], "latest")
	modern := atLeast(o.binary, "v1.0.0-alpha.0")
	m := operatorImageRe.FindStringSubmatch(o.image)
	switch {
	case m == nil && modern:
		o.version = kv
	case m == nil:
		o.version = ""
	case m[3] == "":
		o.version = "latest"
	case strings.HasPrefix(m[3], ":"):
		o.version = m[3][1:]
	case modern || env["KUBEVIRT_VERSION"] != "" && allShasums(env):
		o.version = kv
	default:
		o.version = "latest"
	}
	if m != nil {
		o.registry, o.prefix = m[1], m[2]
	}
	return o
}

func allShasums(env map[string]string) bool {
	for _, c := range []string{"VIRT_API", "VIRT_CONTROLLER", "VIRT_HANDLER", "VIRT_LAUNCHER"} {
		if env[c+"_SHASUM"] == "" {
			return false
		}
	}
	return true
}

// binaryVersion is the release an image runs: its tag, else (by digest)
// KUBEVIRT_VERSION, else "latest".
func binaryVersion(image, kubevirtVersion string) string {
	repo, _, hasDigest := strings.Cut(image, "@")
	if slash, colon := strings.LastIndex(repo, "/"), strings.LastIndex(repo, ":"); !hasDigest && colon > slash {
		return repo[colon+1:]
	}
	return cmp.Or(kubevirtVersion, "latest")
}

// idOperatorImage is the operator image that goes into the install
// strategy's deployment id: none before v0.58.1; the operator's own image
// through v1.7.0-rc.0 (so swapping the operator under a pinned CR
// redeploys the same version with the new operator's manifests); from
// v1.7.0-rc.1 a CR naming a tag or registry hashes the image that pair
// would give instead.
func idOperatorImage(op runningOperator, spec map[string]any) string {
	tag, _ := spec["imageTag"].(string)
	reg, _ := spec["imageRegistry"].(string)
	switch {
	case !atLeast(op.version, "v0.58.1"):
		return ""
	case !atLeast(op.version, "v1.7.0-rc.1") || tag == "" && reg == "":
		return op.image
	}
	return cmp.Or(reg, op.registry) + "/" + op.prefix + "virt-operator:" + cmp.Or(tag, op.target)
}
