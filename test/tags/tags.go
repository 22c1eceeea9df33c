// Package tags is the real list of KubeVirt release tags, for tests that
// need the catalog and nothing else (the planner's link no Kubernetes
// client through it).
package tags

import (
	_ "embed"
	"strings"
)

// Text is the real list of KubeVirt release tags (../shared/kubevirt/releases.txt
// at the time of copying), one per line, oldest first.
//
//go:embed releases.txt
var Text []byte

// Tags returns the tags of Text in order.
func Tags() []string { return strings.Fields(string(Text)) }
