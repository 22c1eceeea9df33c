package podrun_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kvgitops/kvgitops/hack/ociimage"
	"github.com/kvgitops/kvgitops/test/podrun"
	"github.com/kvgitops/kvgitops/test/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestAContainerSeesWhatItsPodSpecSays: the probe program, as a pod with a
// restricted security context, a Secret volume, an emptyDir, env from a
// ConfigMap and a field, sees its user, a read-only root, PID 1, the pod's
// hostname, its mounts (read-only where marked), its service account's
// namespace and exactly its environment; Stop leaves nothing.
func TestAContainerSeesWhatItsPodSpecSays(t *testing.T) {
	env := testenv.Get(t)
	ctx := t.Context()
	ns := "podrun"
	probeObjects(t, kubernetes.NewForConfigOrDie(env.Config), ns)
	dir := t.TempDir()
	spec := corev1.PodSpec{
		ServiceAccountName: "probe",
		SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532), RunAsGroup: ptr.To[int64](4343)},
		Containers: []corev1.Container{{
			Name: "probe", Args: []string{"--flag=value"},
			EnvFrom:         []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "c"}}}},
			Env:             []corev1.EnvVar{{Name: "MY_NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}},
			SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: ptr.To(true)},
			VolumeMounts: []corev1.VolumeMount{{Name: "secret", MountPath: "/etc/probe/secret", ReadOnly: true}, {Name: "tmp", MountPath: "/tmp"},
				{Name: "optional", MountPath: "/etc/probe/optional", ReadOnly: true}},
		}},
		Volumes: []corev1.Volume{
			{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}},
			{Name: "optional", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "absent", Optional: ptr.To(true)}}},
			{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
	}
	pod, err := podrun.Start(ctx, podrun.Options{Name: "probe-1", Namespace: ns, Spec: spec, Image: probeImage(t, dir), Admin: env.Config, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-pod.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("the probe did not exit in 30s")
	}
	pod.Stop()
	if left := pod.Leftovers(); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	var seen struct {
		UID, GID, PID                             int
		Hostname, WD, Secret, Namespace           string
		RootWritable, TmpWritable, SecretWritable bool
		Env, Args                                 []string
	}
	if err := json.Unmarshal([]byte(pod.Output()), &seen); err != nil || pod.ExitCode() != 0 {
		t.Fatalf("exit %d, output %q: %v", pod.ExitCode(), pod.Output(), err)
	}
	if seen.UID != 65532 || seen.GID != 4343 || seen.PID != 1 || seen.Hostname != "probe-1" || seen.WD != "/home/nonroot" {
		t.Errorf("uid %d gid %d pid %d hostname %q wd %q: want 65532 4343 1 probe-1 /home/nonroot", seen.UID, seen.GID, seen.PID, seen.Hostname, seen.WD)
	}
	// The working directory is the user's own: only the read-only root
	// keeps it from writing there.
	if seen.RootWritable || !seen.TmpWritable || seen.SecretWritable {
		t.Errorf("writable: root (its home) %v, emptyDir %v, read-only Secret %v", seen.RootWritable, seen.TmpWritable, seen.SecretWritable)
	}
	if seen.Secret != "sesame" || seen.Namespace != ns || !slices.Equal(seen.Args, []string{"--flag=value"}) {
		t.Errorf("secret %q namespace %q args %q", seen.Secret, seen.Namespace, seen.Args)
	}
	for _, want := range []string{"FROM_CONFIG=yes", "MY_NS=" + ns, "HOSTNAME=probe-1", "HOME=/home/nonroot", "PROBE_WEB_SERVICE_PORT_HTTP=80", "PROBE_WEB_PORT_80_TCP_PROTO=tcp", "KUBERNETES_SERVICE_HOST=127.0.0.1"} {
		if !slices.Contains(seen.Env, want) {
			t.Errorf("env lacks %s: %v", want, seen.Env)
		}
	}
	for _, e := range seen.Env {
		if strings.HasPrefix(e, "PATH=/usr/sbin") || strings.HasPrefix(e, "GOFLAGS=") {
			t.Errorf("the host's environment leaked in: %s", e)
		}
	}
}

// probeObjects are what the probe's pod refers to: its namespace, service
// account, Secret, ConfigMap and a Service (for the links).
func probeObjects(t *testing.T, kube kubernetes.Interface, ns string) {
	t.Helper()
	ctx := t.Context()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "probe-web"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	for _, create := range []func() error{
		func() error {
			_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "probe"}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Data: map[string][]byte{"key": []byte("sesame")}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Data: map[string]string{"FROM_CONFIG": "yes"}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
			return err
		},
	} {
		if err := create(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRunAsNonRootWithRootDoesNotStart: as the kubelet refuses it.
func TestRunAsNonRootWithRootDoesNotStart(t *testing.T) {
	env := testenv.Get(t)
	dir := t.TempDir()
	spec := corev1.PodSpec{AutomountServiceAccountToken: ptr.To(false),
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](0)},
		Containers:      []corev1.Container{{Name: "probe"}}}
	_, err := podrun.Start(t.Context(), podrun.Options{Name: "root", Namespace: "default", Spec: spec, Image: probeImage(t, dir), Admin: env.Config, Dir: dir})
	if !errors.Is(err, podrun.ErrNotStarted) || !strings.Contains(err.Error(), "runAsNonRoot") {
		t.Errorf("started as root with runAsNonRoot: %v", err)
	}
}

// probeImage is the probe program in kvgitops's image layout (user 65532,
// working directory /home/nonroot), with "run" as its cmd.
func probeImage(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "probe")
	build := exec.Command("go", "build", "-o", bin, "./testdata/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Image(b, nil, "test", "amd64")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "probe.tar")
	if err := ociimage.WriteOCIArchive(img, "probe:test", out); err != nil {
		t.Fatal(err)
	}
	return out
}
