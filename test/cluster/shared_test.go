//go:build realnode

package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/test/kustomize"
	"github.com/kvgitops/kvgitops/test/stack"
)

// shared are the images several tests import, built once per test binary
// (the tests run side by side).
var shared struct {
	once            sync.Once
	dir             string
	pause, kvgitops string
	err             error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// nodeWithKvgitops starts a cluster whose containerd holds the sandbox's
// image and kvgitops's (named as deploy/ pins it); the cluster stops and
// the context ends with the test.
func nodeWithKvgitops(t *testing.T, limit time.Duration) (context.Context, *Cluster) {
	t.Helper()
	opts := binaries(t)
	kust, err := kustomize.Read()
	if err != nil {
		t.Fatal(err)
	}
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "kvgitops-cluster-"); shared.err != nil {
			return
		}
		if shared.pause, shared.err = pauseImage(shared.dir); shared.err == nil {
			shared.kvgitops, shared.err = stack.BuildImage(shared.dir, kust.Image())
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	opts.Images = append(opts.Images, shared.pause, shared.kvgitops)
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	t.Cleanup(cancel)
	c, err := Start(ctx, filepath.Join(t.TempDir(), "node"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return ctx, c
}

// pauseImage is the sandbox image.
func pauseImage(dir string) (string, error) {
	app := filepath.Join(dir, "app")
	build := exec.Command("go", "build", "-tags", "realnode", "-ldflags", "-s -w", "-o", app, "./app")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the sandbox's binary: %w\n%s", err, out)
	}
	img := filepath.Join(dir, "pause.tar")
	return img, ociArchive(img, PauseImage, app, []string{"pause"})
}
