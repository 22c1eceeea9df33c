package executor

import (
	"context"
)

// RestoreCR puts spec.imageTag and spec.imageRegistry of the KubeVirt CR
// back to the values kvgitops applied (empty: unset), for drift correction.
// It does nothing unless the operator still targets and runs version: once
// it has started on a hand-set value, putting the old one back would be a
// downgrade, which is never made. It reports whether it patched.
func (e *Executor) RestoreCR(ctx context.Context, version, imageTag, imageRegistry string) (bool, error) {
	apiVersion, err := e.kubevirtAPIVersion(ctx)
	if err != nil || apiVersion == "" {
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
