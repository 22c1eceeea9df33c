package release

import (
	"regexp"
	"strings"

	"github.com/kvgitops/kvgitops/planner"
)

// ImageRef is a container image reference split the way virt-operator
// splits its own (docs/kubevirt.md, "How the operator reads its version").
type ImageRef struct {
	Repository string // everything before the tag or digest: quay.io/kubevirt/virt-operator
	Tag        string // "" when the image has none
	Digest     string // sha256:…, "" when the image is not by digest
}

// parseImage splits an image reference. A colon after the last slash starts
// the tag; an @ starts the digest.
func ParseImage(image string) ImageRef {
	var r ImageRef
	name := image
	if at := strings.Index(name, "@"); at >= 0 {
		name, r.Digest = name[:at], name[at+1:]
	}
	if colon := strings.LastIndex(name, ":"); colon > strings.LastIndex(name, "/") {
		name, r.Tag = name[:colon], name[colon+1:]
	}
	r.Repository = name
	return r
}

// Registry is the repository without its last path element: the part
// virt-operator reports as targetKubeVirtRegistry (quay.io/kubevirt).
func (r ImageRef) Registry() string {
	if i := strings.LastIndex(r.Repository, "/"); i >= 0 {
		return r.Repository[:i]
	}
	return ""
}

// canonicalRepository spells a repository the way the container runtime
// resolves it: a first element that is no host (no '.' or ':', not
// localhost) is Docker Hub's, so "slpcat/virt-operator" and
// "docker.io/slpcat/virt-operator" are the same image, and
// index.docker.io is docker.io.
func canonicalRepository(repo string) string {
	first, rest, found := strings.Cut(repo, "/")
	switch {
	case !found && !strings.ContainsAny(first, ".:") && first != "localhost":
		return "docker.io/" + repo // a Docker Hub namespace (a configured mirror "slpcat")
	case !found || first == "localhost" || strings.ContainsAny(first, ".:") && first != "index.docker.io":
		return repo
	case first == "index.docker.io":
		return "docker.io/" + rest
	}
	return "docker.io/" + repo
}

// operatorImageEnv is where virt-operator finds its own image: the newer
// variable first, then the one it replaced in v0.58.1.
var operatorImageEnv = []string{"VIRT_OPERATOR_IMAGE", "OPERATOR_IMAGE"}

// operatorImageName is virt-operator's own pattern for its image: the last
// path element must end in "virt-operator" (util/config.go).
var operatorImageName = regexp.MustCompile(`^(.*)/(.*)virt-operator([@:].*)?$`)

// OperatorVersion derives the KubeVirt version a virt-operator container
// installs, and the registry of its components, with the operator's own
// rules (util/config.go getConfig; docs/kubevirt.md, "How the operator
// reads its version"): its image is VIRT_OPERATOR_IMAGE, else
// OPERATOR_IMAGE (with neither it does not start: ""); a tag is the
// version; by digest, KUBEVIRT_VERSION (before v1.0 only with every
// *_SHASUM set, else "latest"); no tag, "latest". An image whose name does
// not end in virt-operator gives no registry and, from v1.0,
// KUBEVIRT_VERSION (else "latest"), before v1.0 no version at all: a
// renamed mirror does not keep the version.
func OperatorVersion(env map[string]string) (version, registry string) {
	image := operatorImage(env)
	if image == "" || strings.ContainsAny(image, " \t\n") {
		return "", ""
	}
	kv := env["KUBEVIRT_VERSION"]
	ref := ParseImage(image)
	modern := planner.ValidTag(ref.Tag) && planner.TagAtLeast(ref.Tag, "v1.0.0-alpha.0") || planner.ValidTag(kv) && planner.TagAtLeast(kv, "v1.0.0-alpha.0")
	m := operatorImageName.FindStringSubmatch(image)
	switch {
	case m == nil && modern:
		return orLatest(kv), ""
	case m == nil:
		return "", ""
	case m[3] == "":
		return "latest", m[1]
	case strings.HasPrefix(m[3], ":"):
		return m[3][1:], m[1]
	case modern || kv != "" && allShasums(env):
		return orLatest(kv), m[1]
	}
	return "latest", m[1]
}

// operatorImage: VIRT_OPERATOR_IMAGE, else OPERATOR_IMAGE.
func operatorImage(env map[string]string) string {
	for _, k := range operatorImageEnv {
		if image := env[k]; image != "" {
			return image
		}
	}
	return ""
}

func allShasums(env map[string]string) bool {
	for _, c := range []string{"VIRT_API", "VIRT_CONTROLLER", "VIRT_HANDLER", "VIRT_LAUNCHER"} {
		if env[c+"_SHASUM"] == "" {
			return false
		}
	}
	return true
}

func orLatest(v string) string {
	if v == "" {
		return "latest"
	}
	return v
}
