package releases

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
)

// The RBAC of kubevirt-operator.yaml, release by release, is data derived
// from the genuine release assets (TestRBACTable regenerates it with
// -update from ../shared/real-manifests and proves it reproduces every one
// of them). Each row is one rule of one role, present from a release up to
// (not including) another: between two known releases a rule is taken to
// stay as it was in the older one.
//
//go:embed testdata/rbac.tsv
var rbacTable []byte

// The roles of kubevirt-operator.yaml.
const (
	RoleOperator     = "ClusterRole/kubevirt-operator"
	RoleAggregate    = "ClusterRole/kubevirt.io:operator"
	RoleNamespaced   = "Role/kubevirt-operator"
	rbacTableColumns = 8
)

type rbacRow struct {
	since, until string // until "" is open
	role         string
	rule         rbacv1.PolicyRule
}

var rbacRows = mustParseRBAC(rbacTable)

func mustParseRBAC(data []byte) []rbacRow {
	rows, err := parseRBAC(data)
	if err != nil {
		panic(fmt.Sprintf("testdata/rbac.tsv: %v", err))
	}
	return rows
}

func parseRBAC(data []byte) ([]rbacRow, error) {
	var rows []rbacRow
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != rbacTableColumns {
			return nil, fmt.Errorf("line %d: %d columns, want %d", n, len(f), rbacTableColumns)
		}
		rows = append(rows, rbacRow{since: f[0], until: f[1], role: f[2], rule: rbacv1.PolicyRule{
			APIGroups: list(f[3]), Resources: list(f[4]), Verbs: list(f[5]), ResourceNames: list(f[6]), NonResourceURLs: list(f[7]),
		}})
	}
	return rows, sc.Err()
}

// list reads a comma-separated column: "-" is no list, "" one empty
// string (the core API group).
func list(s string) []string {
	switch s {
	case "-":
		return nil
	case "":
		return []string{""}
	}
	return strings.Split(s, ",")
}

func column(l []string) string {
	if l == nil {
		return "-"
	}
	return strings.Join(l, ",")
}

// Rules are the rules of role (RoleOperator, RoleAggregate,
// RoleNamespaced) in the release tag's kubevirt-operator.yaml.
func Rules(role, tag string) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range rbacRows {
		if r.role == role && AtLeast(tag, r.since) && (r.until == "" || !AtLeast(tag, r.until)) {
			out = append(out, r.rule)
		}
	}
	return out
}

// ComponentRoleName is the ClusterRole the simulated operator writes with
// the component rules of an install strategy.
const ComponentRoleName = "kubevirt-controller"
