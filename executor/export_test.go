package executor

import (
	"context"

	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/release"
)

// ApplyManifest exposes the apply step to the installer RBAC test.
func (e *Executor) ApplyManifest(ctx context.Context, m *release.Manifest) error {
	return e.applyManifest(ctx, m)
}

// CanRunHopBy reports whether a hop by m can run.
func CanRunHopBy(m planner.Method) bool { _, ok := hopBy[m]; return ok }
