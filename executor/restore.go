package executor

import (
	"context"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/redact"
)

// RestoreCR puts spec.imageTag and spec.imageRegistry of the KubeVirt CR
// back to the values kvgitops applied (empty: unset), for drift correction.
// It writes only what kvgitops itself would: no tag or version's own tag,
// no registry or a configured mirror (--release-image-registry); anything
// else is refused (RestoreRefused) before the cluster is read. It does
// nothing unless the operator still targets and runs version: once it has
// started on a hand-set value, putting the old one back would be a
// downgrade, which is never made. It reports whether it patched.
func (e *Executor) RestoreCR(ctx context.Context, version, imageTag, imageRegistry string) (bool, error) {
	if imageTag != "" && imageTag != version {
		return false, fault.Stalled(ReasonRestoreRefused, nil, "drift correction would set spec.imageTag %s while %s runs: only the release's own tag (or none) is written back",
			redact.Quote(imageTag), redact.Quote(version))
	}
	if imageRegistry != "" && !e.mirror(imageRegistry) {
		return false, fault.Stalled(ReasonRestoreRefused, nil, "drift correction would set spec.imageRegistry %s, which is not a configured mirror (--release-image-registry): only a mirror (or none) is written back",
			redact.Quote(imageRegistry))
	}
	apiVersion, err := e.kubevirtAPIVersion(ctx)
	if err != nil || apiVersion == "" {
		return false, err
	}
	if err := e.quiet(ctx); err != nil {
		return false, err
	}
	patched := false
	err = e.patchKubeVirt(ctx, apiVersion, func(k *KubeVirtState) []map[string]any {
		patched = false
		if k.Target != version || k.Observed != version || k.Deleting {
			return nil
		}
		var ops []map[string]any
		for _, f := range []struct{ path, have, want string }{
			{"/spec/imageTag", k.ImageTag, imageTag},
			{"/spec/imageRegistry", k.ImageRegistry, imageRegistry},
		} {
			switch {
			case f.have == f.want:
			case f.want == "":
				ops = append(ops, map[string]any{"op": "remove", "path": f.path})
			default:
				ops = append(ops, map[string]any{"op": "add", "path": f.path, "value": f.want})
			}
		}
		patched = len(ops) > 0
		return ops
	})
	return patched && err == nil, err
}

// mirror reports whether registry is a configured mirror.
func (e *Executor) mirror(registry string) bool {
	return e.cfg.Releases != nil && e.cfg.Releases.Mirror(registry)
}
