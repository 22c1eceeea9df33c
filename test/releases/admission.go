package releases

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// AdmissionRulesSince is the oldest release whose operator RBAC the
// admission policy admits: the first with a v1 KubeVirt CRD, the oldest a
// cluster with ValidatingAdmissionPolicy (Kubernetes 1.30+) can install.
const AdmissionRulesSince = "v0.40.0"

// AdmissionRules renders the CEL variables of deploy/admission-policy.yaml
// that hold every rule a release since AdmissionRulesSince grants the roles
// the agent writes: releaseRules maps "Kind/name|group|resource" to the
// verbs granted without resourceNames, namedRules to the verbs and names
// granted only for named objects. A role written with any other rule is
// refused for the agent's identity.
func AdmissionRules() string {
	free := map[string]map[string]bool{}
	type named struct{ verbs, names map[string]bool }
	byName := map[string]*named{}
	for _, r := range rbacRows {
		if r.until != "" && AtLeast(AdmissionRulesSince, r.until) {
			continue // gone before the oldest release the policy admits
		}
		for _, g := range r.rule.APIGroups {
			for _, res := range r.rule.Resources {
				key := r.role + "|" + g + "|" + res
				if len(r.rule.ResourceNames) == 0 {
					if free[key] == nil {
						free[key] = map[string]bool{}
					}
					for _, v := range r.rule.Verbs {
						free[key][v] = true
					}
					continue
				}
				if byName[key] == nil {
					byName[key] = &named{verbs: map[string]bool{}, names: map[string]bool{}}
				}
				for _, v := range r.rule.Verbs {
					byName[key].verbs[v] = true
				}
				for _, n := range r.rule.ResourceNames {
					byName[key].names[n] = true
				}
			}
		}
	}
	var b strings.Builder
	b.WriteString("  - name: releaseRules\n    expression: >-\n      {\n")
	for _, k := range slices.Sorted(maps.Keys(free)) {
		fmt.Fprintf(&b, "        %s: %s,\n", quote(k), celList(free[k]))
	}
	b.WriteString("      }\n  - name: namedRules\n    expression: >-\n      {\n")
	for _, k := range slices.Sorted(maps.Keys(byName)) {
		fmt.Fprintf(&b, "        %s: {'verbs': %s, 'names': %s},\n", quote(k), celList(byName[k].verbs), celList(byName[k].names))
	}
	b.WriteString("      }\n")
	return b.String()
}

func celList(set map[string]bool) string {
	var q []string
	for _, s := range slices.Sorted(maps.Keys(set)) {
		q = append(q, quote(s))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }
