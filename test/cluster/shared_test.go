//go:build realnode

package cluster

import (
	"context"
	"fmt"
	"io"
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

// kubevirtCluster starts a cluster of n nodes (nodeWithKvgitops, then
// AddNode), each holding KubeVirt's images of nodeTags too; its logs are
// kept when the test fails (keepLogs).
func kubevirtCluster(t *testing.T, n int, limit time.Duration) (context.Context, *Cluster, KubeVirtBuilds) {
	t.Helper()
	builds := kubevirtBuilds(t)
	start := time.Now()
	ctx, c := nodeWithKvgitops(t, limit)
	keepLogs(t, c)
	for range n - 1 {
		if _, err := c.AddNode(ctx, []string{shared.pause, shared.kvgitops}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Import(func(w io.Writer) error { return WriteKubeVirtImages(w, builds, nodeTags) }); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d nodes Ready with KubeVirt's images of %v %s after start", n, nodeTags, time.Since(start).Round(100*time.Millisecond))
	return ctx, c, builds
}

// keepLogs copies the cluster's logs (its processes' and its pods', every
// node's) to $KVGITOPS_KEEP_LOGS/<test> when the test fails, before the
// cluster goes.
func keepLogs(t *testing.T, c *Cluster) {
	dir := os.Getenv("KVGITOPS_KEEP_LOGS")
	if dir == "" {
		return
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range c.Nodes() {
			dst := filepath.Join(dir, t.Name(), n.name)
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Log(err)
				return
			}
			if out, err := exec.Command("cp", "-r", n.path("logs"), n.path("pod-logs"), dst).CombinedOutput(); err != nil {
				t.Logf("keep logs: %v: %s", err, out)
			}
		}
		t.Logf("logs kept in %s", filepath.Join(dir, t.Name()))
	})
}
