package executor

import "context"

// ApplyManifest exposes the apply step to the installer RBAC test.
func (e *Executor) ApplyManifest(ctx context.Context, m *Manifest) error {
	return e.applyManifest(ctx, m)
}

// ParseOperatorManifest exposes manifest parsing to the fuzz target.
var ParseOperatorManifest = parseOperatorManifest

// ParseCRManifest vets kubevirt-cr.yaml.
var ParseCRManifest = parseCRManifest
