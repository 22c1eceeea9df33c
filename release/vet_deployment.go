package release

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kvgitops/kvgitops/redact"
)

// operatorEnv are the variables a release's virt-operator container may
// carry (docs/kubevirt.md, "How the operator reads its version"): its own
// image, the version, the digests of digest builds and the component images
// of OLM builds. Anything else (LD_PRELOAD, a proxy) is refused.
var operatorEnv = regexp.MustCompile(`^(OPERATOR_IMAGE|VIRT_OPERATOR_IMAGE|KUBEVIRT_VERSION|WATCH_NAMESPACE|[A-Z_]+_SHASUM|[A-Z_]+_IMAGE)$`)

// operatorVolumes are the volumes of a release's virt-operator pod: its
// optional certificate redact.Secret and, from v0.49, an emptyDir for profiles.
var operatorVolumes = map[string]func(map[string]any) bool{
	"kubevirt-operator-certs": func(v map[string]any) bool {
		name, _, _ := unstructured.NestedString(v, "secret", "secretName")
		return len(v) == 2 && name == "kubevirt-operator-certs"
	},
	"profile-data": func(v map[string]any) bool {
		_, ok := v["emptyDir"]
		return len(v) == 2 && ok
	},
}

func (c *vetter) deployment(o *unstructured.Unstructured) {
	obj := objectName(o)
	const podPath = "spec.template.spec"
	pod, _, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec")
	c.podIdentity(obj, podPath, pod)
	sc, _ := pod["securityContext"].(map[string]any)
	c.securityContext(obj, podPath+".securityContext", sc)
	if s, _ := sc["sysctls"].([]any); len(s) > 0 {
		c.add(obj, podPath+".securityContext.sysctls", "must be empty")
	}
	c.volumes(obj, podPath, pod)
	containers, _ := pod["containers"].([]any)
	found := false
	for i, ct := range containers {
		m, _ := ct.(map[string]any)
		field := fmt.Sprintf("%s.containers[%d]", podPath, i)
		if str(m["name"]) != "virt-operator" || found {
			c.add(obj, field+".name", "only the virt-operator container is allowed, got %s", redact.Quote(str(m["name"])))
			continue
		}
		found = true
		c.container(obj, field, m)
	}
	if !found {
		c.add(obj, podPath+".containers", "has no virt-operator container")
	}
}

// podIdentity: the operator's ServiceAccount and priority, no host
// namespaces, runtime class or extra containers.
func (c *vetter) podIdentity(obj, podPath string, pod map[string]any) {
	if sa := str(pod["serviceAccountName"]); sa != "kubevirt-operator" {
		c.add(obj, podPath+".serviceAccountName", "must be kubevirt-operator, got %s", redact.Quote(sa))
	}
	if sa, ok := pod["serviceAccount"]; ok && str(sa) != "kubevirt-operator" {
		c.add(obj, podPath+".serviceAccount", "must be kubevirt-operator, got %s", redact.Quote(str(sa)))
	}
	for _, f := range []string{"hostNetwork", "hostPID", "hostIPC"} {
		if b, _ := pod[f].(bool); b {
			c.add(obj, podPath+"."+f, "must not be true: host access")
		}
	}
	for _, f := range []string{"initContainers", "ephemeralContainers"} {
		if l, _ := pod[f].([]any); len(l) > 0 {
			c.add(obj, podPath+"."+f, "must be empty, got %d", len(l))
		}
	}
	if pc := str(pod["priorityClassName"]); pc != "" && pc != "kubevirt-cluster-critical" {
		c.add(obj, podPath+".priorityClassName", "must be kubevirt-cluster-critical, got %s", redact.Quote(pc))
	}
	if rc := str(pod["runtimeClassName"]); rc != "" {
		c.add(obj, podPath+".runtimeClassName", "must not be set, got %s", redact.Quote(rc))
	}
}

// volumes: only a release's.
func (c *vetter) volumes(obj, podPath string, pod map[string]any) {
	volumes, _ := pod["volumes"].([]any)
	for i, v := range volumes {
		m, _ := v.(map[string]any)
		name := str(m["name"])
		if ok := operatorVolumes[name]; ok == nil || !ok(m) {
			what := "a volume a release does not have"
			if _, host := m["hostPath"]; host {
				what = "a hostPath volume: host access"
			}
			c.add(obj, fmt.Sprintf("%s.volumes[%d]", podPath, i), "%s is %s", redact.Quote(name), what)
		}
	}
}

func (c *vetter) container(obj, field string, m map[string]any) {
	image := str(m["image"])
	c.image(obj, field+".image", image, "virt-operator")
	argv := append(strs(m["command"]), strs(m["args"])...)
	if !operatorArgs.MatchString(strings.Join(argv, " ")) {
		c.add(obj, field+".command", "must run virt-operator --port 8443 -v N as every release does, got %s", redact.Quote(strings.Join(argv, " ")))
	}
	env := c.env(obj, field, m, image)
	c.Version, _ = OperatorVersion(env)
	if c.Version != c.Tag {
		c.add(obj, field+".image", "runs version %s (as virt-operator reads %s), want %s", redact.Quote(c.Version), redact.Quote(image), c.Tag)
	}
	if v := env["KUBEVIRT_VERSION"]; v != "" && v != c.Tag {
		c.add(obj, field+".env.KUBEVIRT_VERSION", "must be %s, got %s", c.Tag, redact.Quote(v))
	}
	c.containerSecurity(obj, field, mapAt(m, "securityContext"))
	c.containerHooks(obj, field, m)
}

// env checks the container's variables: only a release's names, literal
// values, images from the allowed registries; it returns them.
func (c *vetter) env(obj, field string, m map[string]any, image string) map[string]string {
	env := map[string]string{}
	list, _ := m["env"].([]any)
	for i, e := range list {
		em, _ := e.(map[string]any)
		name := str(em["name"])
		ef := fmt.Sprintf("%s.env[%d]", field, i)
		switch {
		case !operatorEnv.MatchString(name):
			c.add(obj, ef, "%s is not a variable of a release", redact.Quote(name))
		case em["valueFrom"] != nil && name != "WATCH_NAMESPACE":
			c.add(obj, ef+".valueFrom", "%s must have a literal value", name)
		}
		env[name] = str(em["value"])
	}
	if _, ok := m["envFrom"]; ok {
		c.add(obj, field+".envFrom", "must not be set")
	}
	for _, k := range operatorImageEnv {
		if v, ok := env[k]; ok && v != image {
			c.add(obj, field+".env."+k, "must equal the container image %s, got %s", redact.Quote(image), redact.Quote(v))
		}
	}
	for k, v := range env {
		if strings.HasSuffix(k, "_IMAGE") && !slices.Contains(operatorImageEnv, k) {
			c.image(obj, field+".env."+k, v, "")
		}
	}
	return env
}

// containerSecurity: no privilege, escalation, added capabilities or
// unusual /proc, beside what a pod's security context must not hold.
func (c *vetter) containerSecurity(obj, field string, sc map[string]any) {
	c.securityContext(obj, field+".securityContext", sc)
	if p, _ := sc["privileged"].(bool); p {
		c.add(obj, field+".securityContext.privileged", "must not be true")
	}
	if p, _ := sc["allowPrivilegeEscalation"].(bool); p {
		c.add(obj, field+".securityContext.allowPrivilegeEscalation", "must not be true")
	}
	if add := strs(mapAt(sc, "capabilities")["add"]); len(add) > 0 {
		c.add(obj, field+".securityContext.capabilities.add", "must be empty, got %s", redact.Quote(strings.Join(add, ",")))
	}
	if pm := str(sc["procMount"]); pm != "" && pm != "Default" {
		c.add(obj, field+".securityContext.procMount", "must be Default, got %s", redact.Quote(pm))
	}
}

// containerHooks: no host ports, no commands run by probes or hooks.
func (c *vetter) containerHooks(obj, field string, m map[string]any) {
	ports, _ := m["ports"].([]any)
	for i, p := range ports {
		if hp, ok := mapAt(map[string]any{"p": p}, "p")["hostPort"]; ok && hp != nil {
			c.add(obj, fmt.Sprintf("%s.ports[%d].hostPort", field, i), "must not be set: host access")
		}
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
		if _, exec := mapAt(m, probe)["exec"]; exec {
			c.add(obj, field+"."+probe+".exec", "must not run a command")
		}
	}
	if _, ok := m["lifecycle"]; ok {
		c.add(obj, field+".lifecycle", "must not be set: hooks run commands")
	}
}

// securityContext checks what a pod or container security context shares
// between the two: no root, no unconfined profiles, no SELinux override.
func (c *vetter) securityContext(obj, field string, sc map[string]any) {
	if sc == nil {
		return
	}
	if v, ok := sc["runAsNonRoot"].(bool); ok && !v {
		c.add(obj, field+".runAsNonRoot", "must not be false")
	}
	if uid, ok := sc["runAsUser"]; ok && fmt.Sprint(uid) == "0" {
		c.add(obj, field+".runAsUser", "must not be 0 (root)")
	}
	if _, ok := sc["seLinuxOptions"]; ok {
		c.add(obj, field+".seLinuxOptions", "must not be set")
	}
	for _, p := range []string{"seccompProfile", "appArmorProfile"} {
		if t := str(mapAt(sc, p)["type"]); t == "Unconfined" {
			c.add(obj, field+"."+p+".type", "must not be Unconfined")
		}
	}
}

// image checks that an image comes from an allowed registry (the release's
// own or a configured mirror) and, when repo is set, from that repository
// of it; a configured entry may also name a whole repository.
func (c *vetter) image(obj, field, image, repo string) {
	ref := ParseImage(image)
	ref.Repository = canonicalRepository(ref.Repository)
	for _, r := range c.registries {
		r = canonicalRepository(strings.TrimSuffix(r, "/"))
		if ref.Repository == r || repo == "" && ref.Registry() == r || repo != "" && ref.Repository == r+"/"+repo {
			return
		}
	}
	c.add(obj, field, "%s is not from %s (configure a mirror with --release-image-registry)",
		redact.Quote(image), strings.Join(c.registries, " or "))
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func mapAt(m map[string]any, k string) map[string]any {
	v, _ := m[k].(map[string]any)
	return v
}
