package executor_test

import (
	"context"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/planner"
)

// TestRestoreCRNeverDowngrades: a hand-set spec.imageRegistry is put back
// while the operator still targets and runs the version kvgitops applied;
// once the operator targets another version, nothing is written.
func TestRestoreCRNeverDowngrades(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodOperator)
	ctx := context.Background()

	h.patchCR(t, `{"spec":{"imageRegistry":"mirror.example.com/kubevirt"}}`)
	done, err := h.exec.RestoreCR(ctx, "v1.7.4", "", "")
	if err != nil || !done {
		t.Fatalf("RestoreCR: %v, %v", done, err)
	}
	if o := h.observe(t); o.ImageRegistry != "" || o.KubeVirt.ImageRegistry != "" {
		t.Errorf("spec.imageRegistry %q after the restore", o.KubeVirt.ImageRegistry)
	}
	if done, err := h.exec.RestoreCR(ctx, "v1.7.4", "", ""); err != nil || done {
		t.Errorf("nothing to restore: %v, %v", done, err)
	}

	// By hand to v1.8.4: once the operator targets it, putting v1.7.4's
	// (unset) tag back would be a downgrade.
	h.patchCR(t, `{"spec":{"imageTag":"v1.8.4"}}`)
	waitTarget(t, h, "v1.8.4")
	if done, err := h.exec.RestoreCR(ctx, "v1.7.4", "", ""); err != nil || done {
		t.Errorf("RestoreCR under a new target: %v, %v", done, err)
	}
	if o := h.observe(t); o.KubeVirt.ImageTag != "v1.8.4" {
		t.Errorf("spec.imageTag %q, want the hand-set v1.8.4 kept", o.KubeVirt.ImageTag)
	}
}

func waitTarget(t *testing.T, h *harness, tag string) {
	t.Helper()
	for range 200 {
		if o := h.observe(t); o.KubeVirt != nil && o.KubeVirt.Target == tag {
			return
		}
		sleepShort()
	}
	t.Fatalf("the operator never targeted %s", tag)
}

func sleepShort() { time.Sleep(50 * time.Millisecond) }
