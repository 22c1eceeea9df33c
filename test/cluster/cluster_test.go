//go:build realnode

package cluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// TestAPodRunsOnARealNode: a cluster comes up in its own namespaces and a
// second node joins it in its own; on each node a pod as restricted as
// kvgitops's own (non-root, no capabilities, read-only root, seccomp, a
// readiness probe, a projected token) becomes Ready on the real kubelet
// and containerd — ready only once it reaches the apiserver through the
// kubernetes Service with its token (from the second node, across the
// nodes' link) — and Stop leaves nothing behind of either node.
func TestAPodRunsOnARealNode(t *testing.T) {
	t.Parallel() // each test has its own cluster
	opts := binaries(t)
	dir := t.TempDir()
	app := filepath.Join(dir, "app")
	build := exec.Command("go", "build", "-tags", "realnode", "-ldflags", "-s -w -X main.tag=a", "-o", app, "./app")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the test image's binary: %v\n%s", err, out)
	}
	for name, args := range map[string][]string{PauseImage: {"pause"}, "registry.local/app:a": {"serve"}} {
		img := filepath.Join(dir, filepath.Base(name)+".tar")
		if err := ociArchive(img, name, app, args); err != nil {
			t.Fatal(err)
		}
		opts.Images = append(opts.Images, img)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := Start(ctx, filepath.Join(dir, "node"), opts)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			c.Stop()
		}
	}()
	t.Logf("node %s Ready %s after start", c.Name(), time.Since(start).Round(100*time.Millisecond))
	added := time.Now()
	if _, err := c.AddNode(ctx, opts.Images); err != nil {
		t.Fatal(err)
	}
	t.Logf("a second node Ready %s after it was added", time.Since(added).Round(100*time.Millisecond))
	kube := kubernetes.NewForConfigOrDie(c.Config)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo", Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.until(ctx, time.Minute, "the namespace's default ServiceAccount", func() bool {
		_, err := kube.CoreV1().ServiceAccounts("demo").Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes() {
		created := time.Now()
		pod := restrictedPod("registry.local/app:a")
		pod.Name, pod.Spec.NodeName = "app-"+n.Name(), n.Name()
		if _, err := kube.CoreV1().Pods("demo").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		err = c.until(ctx, 2*time.Minute, pod.Name+" Ready", func() bool {
			p, err := kube.CoreV1().Pods("demo").Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
					return true
				}
			}
			return false
		})
		if err != nil {
			p, _ := kube.CoreV1().Pods("demo").Get(ctx, pod.Name, metav1.GetOptions{})
			t.Fatalf("%v; pod status %+v; kubelet log %s", err, p.Status, n.Log("kubelet"))
		}
		t.Logf("a restricted pod Ready on %s %s after create", n.Name(), time.Since(created).Round(100*time.Millisecond))
	}
	stopAt := time.Now()
	c.Stop()
	stopped = true
	t.Logf("stopped in %s", time.Since(stopAt).Round(100*time.Millisecond))
	if left := c.Leftovers(); len(left) > 0 {
		t.Errorf("Stop left %v", left)
	}
}

func restrictedPod(image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65534),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers: []corev1.Container{{
				Name: "app", Image: image, ImagePullPolicy: corev1.PullNever,
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1},
			}},
		},
	}
}

// binaries finds the control plane and the node's binaries; without them
// the test fails (make node-lane builds them), never skips.
func binaries(t *testing.T) Options {
	t.Helper()
	o := Options{Testbin: os.Getenv("KUBEBUILDER_ASSETS"), NodeBin: os.Getenv("KVGITOPS_NODE_DIR")}
	for _, f := range []string{filepath.Join(o.Testbin, "kube-apiserver"), filepath.Join(o.NodeBin, "kubelet")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: run make node-lane (it builds the control plane and the node)", err)
		}
	}
	return o
}
