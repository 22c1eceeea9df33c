package release

import (
	"strings"
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

// OperatorVersion derives the KubeVirt version a virt-operator container
// runs, with the operator's own rules: its image is VIRT_OPERATOR_IMAGE,
// else OPERATOR_IMAGE (else, for a Deployment without either, the
// container's image); a tag is the version; an image by digest, or one that
// does not parse, takes KUBEVIRT_VERSION; an image with neither is
// "latest". It also returns the registry. A mirrored or renamed image works
// as long as its tag (or KUBEVIRT_VERSION) says the version.
func OperatorVersion(containerImage string, env map[string]string) (version, registry string) {
	image := containerImage
	for _, k := range operatorImageEnv {
		if v := env[k]; v != "" {
			image = v
			break
		}
	}
	ref := ParseImage(image)
	switch {
	case ref.Repository == "" || strings.ContainsAny(image, " \t\n"):
		return orLatest(env["KUBEVIRT_VERSION"]), ref.Registry()
	case ref.Digest != "":
		return orLatest(env["KUBEVIRT_VERSION"]), ref.Registry()
	case ref.Tag != "":
		return ref.Tag, ref.Registry()
	}
	return "latest", ref.Registry()
}

func orLatest(v string) string {
	if v == "" {
		return "latest"
	}
	return v
}
