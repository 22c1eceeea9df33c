package releases

import "github.com/kvgitops/kvgitops/test/tags"

// Text is the real list of KubeVirt release tags, one per line, oldest
// first (test/tags).
var Text = tags.Text

// Tags returns the tags of Text in order.
func Tags() []string { return tags.Tags() }
