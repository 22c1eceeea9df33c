package podrun

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// mount is one bind mount into the root filesystem.
type mount struct {
	src, dst string
	ro       bool
}

// tokenPath is where client-go's in-cluster configuration reads the
// service account's token, CA and namespace.
const tokenPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// ErrNotStarted marks a pod the kubelet would not start (a required Secret
// or ConfigMap missing, runAsNonRoot with root): the error says why, as the
// pod's events would.
var ErrNotStarted = fmt.Errorf("the pod would not start")

// mounts makes the container's volumes on the host.
func (p *Pod) mounts(ctx context.Context, c corev1.Container) ([]mount, error) {
	volumes := map[string]corev1.Volume{}
	for _, v := range p.o.Spec.Volumes {
		volumes[v.Name] = v
	}
	var out []mount
	for _, vm := range c.VolumeMounts {
		if vm.SubPath != "" || vm.SubPathExpr != "" {
			return nil, fmt.Errorf("volumeMount %s: subPath is not supported", vm.Name)
		}
		v, ok := volumes[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %s: no volume of that name", vm.Name)
		}
		src := filepath.Join(p.dir, "volumes", v.Name)
		if err := os.MkdirAll(src, 0o755); err != nil {
			return nil, err
		}
		var files map[string][]byte
		var err error
		switch {
		case v.Secret != nil:
			files, err = p.secret(ctx, v.Secret.SecretName, v.Secret.Optional)
		case v.ConfigMap != nil:
			files, err = p.configMap(ctx, v.ConfigMap.Name, v.ConfigMap.Optional)
		case v.EmptyDir != nil:
			err = os.Chmod(src, 0o777) // as the kubelet makes them
		default:
			err = fmt.Errorf("volume %s: only secret, configMap and emptyDir are supported", v.Name)
		}
		if err != nil {
			return nil, err
		}
		if err := writeFiles(src, files); err != nil {
			return nil, err
		}
		out = append(out, mount{src: src, dst: vm.MountPath, ro: vm.ReadOnly})
	}
	if p.o.Spec.AutomountServiceAccountToken == nil || *p.o.Spec.AutomountServiceAccountToken {
		m, err := p.serviceAccountMount(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// serviceAccountMount is the token, CA and namespace of the pod's service
// account, the token requested from the apiserver as the kubelet does.
func (p *Pod) serviceAccountMount(ctx context.Context) (mount, error) {
	sa := p.serviceAccount()
	tr, err := p.kube.CoreV1().ServiceAccounts(p.o.Namespace).CreateToken(ctx, sa,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		return mount{}, fmt.Errorf("%w: a token for service account %s/%s: %v", ErrNotStarted, p.o.Namespace, sa, err)
	}
	ca := p.o.Admin.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(p.o.Admin.CAFile); err != nil {
			return mount{}, err
		}
	}
	src := filepath.Join(p.dir, "volumes", "kube-api-access")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return mount{}, err
	}
	files := map[string][]byte{"token": []byte(tr.Status.Token), "ca.crt": ca, "namespace": []byte(p.o.Namespace)}
	return mount{src: src, dst: tokenPath, ro: true}, writeFiles(src, files)
}

func (p *Pod) serviceAccount() string {
	if sa := p.o.Spec.ServiceAccountName; sa != "" {
		return sa
	}
	return "default"
}

// apiserver is the apiserver's host and port (what the pod reaches
// through a forwarder at the same address).
func (p *Pod) apiserver() (string, string) {
	u, err := url.Parse(p.o.Admin.Host)
	if err != nil {
		return "", ""
	}
	return u.Hostname(), u.Port()
}

// secret is a Secret's data; a missing one is empty when optional and
// stops the start otherwise.
func (p *Pod) secret(ctx context.Context, name string, optional *bool) (map[string][]byte, error) {
	s, err := p.kube.CoreV1().Secrets(p.o.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return missing("secret", name, optional)
	}
	if err != nil {
		return nil, err
	}
	return s.Data, nil
}

// configMap is a ConfigMap's data, as secret.
func (p *Pod) configMap(ctx context.Context, name string, optional *bool) (map[string][]byte, error) {
	cm, err := p.kube.CoreV1().ConfigMaps(p.o.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return missing("configmap", name, optional)
	}
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for k, v := range cm.Data {
		out[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		out[k] = v
	}
	return out, nil
}

func missing(kind, name string, optional *bool) (map[string][]byte, error) {
	if optional != nil && *optional {
		return nil, nil
	}
	return nil, fmt.Errorf("%w: %s %q not found", ErrNotStarted, kind, name)
}

// writeFiles writes a volume's files, readable by the container's user.
func writeFiles(dir string, files map[string][]byte) error {
	for k, v := range files {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o644); err != nil {
			return err
		}
	}
	return nil
}
