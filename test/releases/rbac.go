package releases

import (
	"crypto/sha256"
	"encoding/hex"

	rbacv1 "k8s.io/api/rbac/v1"
)

// rbacAddition is a release that needs RBAC the previous release's operator
// does not hold. The table approximates KubeVirt's history: what matters to
// tests is that some hops add rules and others do not, so an ImageTag hop
// under an old operator fails exactly where a real one would.
type rbacAddition struct {
	since string
	rule  rbacv1.PolicyRule
	why   string
}

var rbacHistory = []rbacAddition{
	{"v0.17.0-alpha.0", rule("kubevirt.io", "virtualmachineinstances", "virtualmachines", "virtualmachineinstancereplicasets", "virtualmachineinstancepresets", "virtualmachineinstancemigrations"), "the v0.17 API"},
	{"v0.17.0-alpha.0", rule("subresources.kubevirt.io", "virtualmachineinstances/console", "virtualmachineinstances/vnc"), "console and VNC"},
	{"v0.19.0-rc.0", rule("subresources.kubevirt.io", "virtualmachines/restart"), "kubevirt#2533: 0.18.1 -> 0.19.0 failed on RBAC"},
	{"v0.24.0", rule("subresources.kubevirt.io", "virtualmachineinstances/pause", "virtualmachineinstances/unpause"), "pause/unpause"},
	{"v0.29.0-rc.0", rule("subresources.kubevirt.io", "virtualmachines/start", "virtualmachines/stop", "virtualmachines/migrate"), "start/stop/migrate"},
	{"v0.33.0-rc.0", rule("snapshot.kubevirt.io", "virtualmachinesnapshots", "virtualmachinesnapshotcontents", "virtualmachinerestores"), "snapshots"},
	{"v0.36.0-rc.0", rule("pool.kubevirt.io", "virtualmachinepools"), "pools"},
	{"v0.41.0-rc.0", rule("migrations.kubevirt.io", "migrationpolicies"), "migration policies"},
	{"v0.49.0-rc.0", rule("instancetype.kubevirt.io", "virtualmachineinstancetypes", "virtualmachinepreferences"), "kubevirt#8595: instancetypes missing from kubevirt.io:admin"},
	{"v0.55.0-rc.0", rule("export.kubevirt.io", "virtualmachineexports"), "exports"},
	{"v1.0.0-alpha.0", rule("clone.kubevirt.io", "virtualmachineclones"), "clones"},
	{"v1.2.0-alpha.0", rule("subresources.kubevirt.io", "virtualmachines/expand-spec"), "expand-spec"},
	{"v1.5.0-alpha.0", rule("subresources.kubevirt.io", "virtualmachineinstances/evacuate"), "evacuation"},
	{"v1.6.0-alpha.0", rule("subresources.kubevirt.io", "virtualmachineinstances/objectgraph"), "object graph"},
	{"v1.9.0-alpha.0", rule("backup.kubevirt.io", "virtualmachinebackups", "virtualmachinebackuptrackers"), "backups"},
}

func rule(group string, resources ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{
		APIGroups: []string{group},
		Resources: resources,
		Verbs:     []string{"get", "list", "watch", "create", "update", "patch", "delete"},
	}
}

// ComponentRules are the rules of the ClusterRoles a release's
// virt-operator creates for its components (kubevirt.io:admin and
// friends), reduced to one role.
func ComponentRules(tag string) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, a := range rbacHistory {
		if AtLeast(tag, a.since) {
			out = append(out, a.rule)
		}
	}
	return out
}

// AddsRBAC reports whether tag needs rules that release from lacks.
func AddsRBAC(from, tag string) bool {
	for _, a := range rbacHistory {
		if AtLeast(tag, a.since) && !AtLeast(from, a.since) {
			return true
		}
	}
	return false
}

// ComponentRoleName is the ClusterRole the simulated operator writes with
// ComponentRules.
const ComponentRoleName = "kubevirt.io:admin"

// operatorOwnRules are what virt-operator needs for itself. They hold no
// wildcard over the component groups, so every component rule must be copied
// into the operator's ClusterRole, as in the real manifest (FACTS.md §3.1).
func operatorOwnRules(tag string) []rbacv1.PolicyRule {
	all := []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{"kubevirt.io"}, Resources: []string{"kubevirts"}, Verbs: all},
		{APIGroups: []string{"kubevirt.io"}, Resources: []string{"kubevirts/status", "kubevirts/finalizers"}, Verbs: []string{"get", "update", "patch"}},
		{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: all},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "daemonsets", "controllerrevisions"}, Verbs: all},
		{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles", "clusterrolebindings", "roles", "rolebindings"}, Verbs: all},
		{APIGroups: []string{"apiregistration.k8s.io"}, Resources: []string{"apiservices"}, Verbs: all},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations", "mutatingwebhookconfigurations"}, Verbs: all},
		{APIGroups: []string{""}, Resources: []string{"services", "serviceaccounts", "secrets", "configmaps", "endpoints", "pods", "events"}, Verbs: all},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: all},
		{APIGroups: []string{"policy"}, Resources: []string{"poddisruptionbudgets"}, Verbs: all},
	}
	if AtLeast(tag, "v0.29.0-rc.0") {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{"scheduling.k8s.io"}, Resources: []string{"priorityclasses"}, Verbs: all})
	}
	return rules
}

func fakeDigest(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
