package executor_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
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

// TestRestoreCRWritesOnlyWhatKvgitopsWould: whatever drift correction is
// asked to put back (from a forged memory, say), it writes no registry but
// a configured mirror and no tag but the running release's own; the refusal
// names the value and nothing is written.
func TestRestoreCRWritesOnlyWhatKvgitopsWould(t *testing.T) {
	h := start(t, harnessOptions{registries: []string{"quay.io/kubevirt", "mirror.example.com/kubevirt"}})
	h.install(t, "v1.7.4", planner.MethodOperator)
	ctx := context.Background()
	for _, c := range []struct{ tag, registry, want string }{
		{"", "evil.example.com/kubevirt", `spec.imageRegistry "evil.example.com/kubevirt"`},
		{"", "mirror.example.com/kubevirt/../evil", `spec.imageRegistry "mirror.example.com/kubevirt/../evil"`},
		{"v1.6.0", "", `spec.imageTag "v1.6.0"`},
		{"v1.8.4", "mirror.example.com/kubevirt", `spec.imageTag "v1.8.4"`},
	} {
		done, err := h.exec.RestoreCR(ctx, "v1.7.4", c.tag, c.registry)
		if done || fault.ReasonOf(err) != executor.ReasonRestoreRefused || !strings.Contains(err.Error(), c.want) {
			t.Errorf("RestoreCR(tag %q, registry %q): %v, %v; want RestoreRefused naming %s", c.tag, c.registry, done, err, c.want)
		}
	}
	if o := h.observe(t); o.KubeVirt.ImageRegistry != "" || o.KubeVirt.ImageTag != "" {
		t.Errorf("the CR was written: registry %q tag %q", o.KubeVirt.ImageRegistry, o.KubeVirt.ImageTag)
	}
	// What kvgitops itself writes is still put back: the mirror, the tag.
	h.patchCR(t, `{"spec":{"imageRegistry":"quay.io/someone"}}`)
	if done, err := h.exec.RestoreCR(ctx, "v1.7.4", "v1.7.4", "docker.io/../mirror.example.com/kubevirt"); done || err == nil {
		t.Errorf("a registry spelt to look like the mirror: %v, %v", done, err)
	}
	if done, err := h.exec.RestoreCR(ctx, "v1.7.4", "v1.7.4", "mirror.example.com/kubevirt"); !done || err != nil {
		t.Fatalf("the configured mirror and the release's tag: %v, %v", done, err)
	}
	if o := h.observe(t); o.KubeVirt.ImageRegistry != "mirror.example.com/kubevirt" || o.KubeVirt.ImageTag != "v1.7.4" {
		t.Errorf("after the restore: registry %q tag %q", o.KubeVirt.ImageRegistry, o.KubeVirt.ImageTag)
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
