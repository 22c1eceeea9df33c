package conformance

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kvgitops/kvgitops/test/gitserver"
	"github.com/kvgitops/kvgitops/test/kustomize"
	"github.com/kvgitops/kvgitops/test/podrun"
	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/stack"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// image is kvgitops's image as make image builds it, built once.
var image struct {
	once      sync.Once
	dir, path string
	err       error
}

func TestMain(m *testing.M) {
	code := testenv.Main(m)
	if image.dir != "" {
		_ = os.RemoveAll(image.dir)
	}
	os.Exit(code)
}

func kvgitopsImage(t *testing.T) string {
	t.Helper()
	image.once.Do(func() {
		if image.dir, image.err = os.MkdirTemp("", "kvgitops-conformance-"); image.err == nil {
			image.path, image.err = stack.BuildImage(image.dir, "kvgitops:conformance")
		}
	})
	if image.err != nil {
		t.Fatal(image.err)
	}
	return image.path
}

// variant is one way a user installs deploy/: its components, the Secrets
// created before the pod starts, and what else its run must show.
type variant struct {
	components []string
	// secrets are created (beside the Git Secret) before the pod starts.
	secrets func(t *testing.T) map[string]map[string][]byte
	// check runs once the agent has committed its status.
	check func(t *testing.T, r *run)
	// reason is the status's reason the run must reach.
	reason string
}

// TestDeployConformance runs the agent as deploy/ renders it, for the base
// and for each optional component (a component without a case here fails
// the test), each until it has reached the apiserver with the
// ServiceAccount's token, read the desired file over HTTPS with the CA of
// the Git Secret, committed its status, and served its probes and metrics
// on the ports the Deployment and Services name.
func TestDeployConformance(t *testing.T) {
	env := testenv.Get(t)
	webhookKey := "conformance-webhook-key"
	variants := map[string]variant{
		// As the README's install steps have it: the Git Secret only.
		"base": {check: func(t *testing.T, r *run) {
			r.logSays(t, "Webhook off", "Release token off")
			r.probesAndMetrics(t)
		}},
		// Every optional Secret of the base too.
		"base with the webhook and token Secrets": {
			secrets: func(*testing.T) map[string]map[string][]byte {
				return map[string]map[string][]byte{"kvgitops-webhook": {"secret": []byte(webhookKey)}, "kvgitops-release-token": {"token": []byte("ghp_conformance")}}
			},
			check: func(t *testing.T, r *run) {
				r.logLacks(t, "Webhook off", "Release token off")
				r.webhook(t, webhookKey)
			}},
		"git-ssh-private": {components: []string{"git-ssh-private"}},
		"dns-anywhere":    {components: []string{"dns-anywhere"}},
		"monitoring":      {components: []string{"monitoring"}, check: func(t *testing.T, r *run) { r.scrapedAsTheServiceMonitorSays(t) }},
		// The verify components: the key loads from the mount, and the
		// unsigned desired file is refused.
		"verify-pgp": {components: []string{"verify-pgp"}, reason: "SignatureInvalid",
			secrets: func(t *testing.T) map[string]map[string][]byte {
				return map[string]map[string][]byte{"kvgitops-verify-pgp": {"keys.asc": pgpPublicKey(t)}}
			}},
		"verify-ssh": {components: []string{"verify-ssh"}, reason: "SignatureInvalid",
			secrets: func(t *testing.T) map[string]map[string][]byte {
				return map[string]map[string][]byte{"kvgitops-verify-ssh": {"authorized_keys": sshPublicKey(t)}}
			}},
	}
	components, err := kustomize.Components()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range components {
		if _, ok := variants[c]; !ok {
			t.Errorf("deploy/components/%s has no conformance case", c)
		}
	}
	names := make([]string, 0, len(variants))
	for n := range variants {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		v := variants[name]
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			r := start(t, env.Config, v)
			want := v.reason
			if want == "" {
				want = "UpToDate"
			}
			r.waitStatus(t, "reason: "+want)
			if v.check != nil {
				v.check(t, r)
			}
		})
	}
}

// TestDeployWithoutItsGitSecretDoesNotStart: the one required Secret of
// the base missing, the kubelet does not start the pod and says which
// Secret it waits for; a required component Secret the same.
func TestDeployWithoutItsGitSecretDoesNotStart(t *testing.T) {
	env := testenv.Get(t)
	for _, components := range [][]string{nil, {"verify-ssh"}} {
		r := prepare(t, env.Config, components)
		_, err := podrun.Start(t.Context(), r.podOptions(t))
		if !errors.Is(err, podrun.ErrNotStarted) || !strings.Contains(err.Error(), `secret "kvgitops-git" not found`) {
			t.Errorf("%v: started without the Git Secret: %v", components, err)
		}
		r.createSecrets(t, map[string]map[string][]byte{"kvgitops-git": {"ca.crt": []byte("x")}})
		if len(components) > 0 {
			_, err = podrun.Start(t.Context(), r.podOptions(t))
			if !errors.Is(err, podrun.ErrNotStarted) || !strings.Contains(err.Error(), `secret "kvgitops-verify-ssh" not found`) {
				t.Errorf("%v: started without its verify Secret: %v", components, err)
			}
		}
	}
}

// run is one variant installed and its pod running.
type run struct {
	admin   *rest.Config
	kube    kubernetes.Interface
	git     *gitserver.Server
	rel     *releases.Server
	name    string // the cluster's name in the config
	objects []*unstructured.Unstructured
	pod     *podrun.Pod
}

// prepare renders deploy/ with the components and a config that points at
// a git server and a release server of the test, applies it as an
// administrator would, and commits an Absent desired file.
func prepare(t *testing.T, admin *rest.Config, components []string) *run {
	t.Helper()
	ctx := t.Context()
	kube := kubernetes.NewForConfigOrDie(admin)
	cleanNamespace(t, kube)
	git, err := gitserver.New(gitserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(git.Close)
	rel := releases.NewServer(nil)
	t.Cleanup(rel.Close)
	user, err := git.User()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := user.CommitFile("clusters/conformance/kubevirt.yaml", stack.DesiredFile("  state: Absent\n"), "desired"); err != nil {
		t.Fatal(err)
	}
	r := &run{admin: admin, kube: kube, git: git, rel: rel, name: "conformance"}
	config := map[string]string{
		"KVGITOPS_REPO_URL": git.URL("repo.git"), "KVGITOPS_DESIRED_PATH": "clusters/conformance/kubevirt.yaml", "KVGITOPS_CLUSTER_NAME": r.name,
		"KVGITOPS_INTERVAL": "2s", "KVGITOPS_RELEASES_URL": rel.ReleasesURL(), "KVGITOPS_MANIFEST_BASE_URL": rel.DownloadBaseURL(),
		"KVGITOPS_RELEASE_CA_FILE": "/etc/kvgitops/git/ca.crt", "KVGITOPS_RELEASE_ALLOWED_NETWORKS": "127.0.0.1/32",
	}
	data, err := kustomize.Render(config, components...)
	if err != nil {
		t.Fatal(err)
	}
	if r.objects, err = testenv.Decode(data); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	var apply bytes.Buffer
	for _, o := range r.objects {
		// Prometheus Operator's kinds have no CRD in the test control
		// plane; scrapedAsTheServiceMonitorSays checks what they say.
		if o.GroupVersionKind().Group == "monitoring.coreos.com" {
			continue
		}
		b, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		apply.WriteString("---\n")
		apply.Write(b)
		apply.WriteString("\n")
		kinds = append(kinds, o.GetKind())
	}
	if err := testenv.Apply(ctx, admin, apply.Bytes()); err != nil {
		t.Fatalf("apply what kustomize renders of deploy/ (%v): %v", kinds, err)
	}
	return r
}

// cleanNamespace removes what an earlier variant left in kvgitops's
// namespace: Secrets, the Lease, the agents' memory, the monitoring
// component's ConfigMap.
func cleanNamespace(t *testing.T, kube kubernetes.Interface) {
	t.Helper()
	ctx := t.Context()
	ns := "kvgitops"
	if err := kube.CoreV1().Secrets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	for _, del := range []func() error{
		func() error { return kube.CoordinationV1().Leases(ns).Delete(ctx, "kvgitops", metav1.DeleteOptions{}) },
		func() error {
			return kube.CoreV1().ConfigMaps(ns).Delete(ctx, stack.MemoryConfigMap, metav1.DeleteOptions{})
		},
	} {
		if err := del(); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
}

// start prepares the variant, creates its Secrets and starts the pod.
func start(t *testing.T, admin *rest.Config, v variant) *run {
	t.Helper()
	r := prepare(t, admin, v.components)
	secrets := map[string]map[string][]byte{"kvgitops-git": {"ca.crt": append(r.git.CAPEM(), r.rel.CAPEM()...)}}
	if v.secrets != nil {
		for k, s := range v.secrets(t) {
			secrets[k] = s
		}
	}
	r.createSecrets(t, secrets)
	pod, err := podrun.Start(t.Context(), r.podOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	r.pod = pod
	t.Cleanup(func() {
		pod.Stop()
		if left := pod.Leftovers(); len(left) > 0 {
			t.Errorf("the pod left %v", left)
		}
		if t.Failed() {
			t.Logf("the pod's output:\n%s", pod.Output())
		}
	})
	return r
}

func (r *run) createSecrets(t *testing.T, secrets map[string]map[string][]byte) {
	t.Helper()
	for name, data := range secrets {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kvgitops"}, Data: data}
		if _, err := r.kube.CoreV1().Secrets("kvgitops").Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// deployment is the rendered Deployment.
func (r *run) deployment(t *testing.T) appsv1.Deployment {
	t.Helper()
	for _, o := range r.objects {
		if o.GetKind() == "Deployment" {
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatal("no Deployment rendered")
	return appsv1.Deployment{}
}

// podOptions run the rendered pod template with the image make image
// builds, the git and release servers reachable from inside.
func (r *run) podOptions(t *testing.T) podrun.Options {
	d := r.deployment(t)
	return podrun.Options{Name: "kvgitops-conformance", Namespace: d.Namespace, Spec: d.Spec.Template.Spec, Image: kvgitopsImage(t),
		Admin: r.admin, Forward: []string{r.git.Addr(), strings.TrimPrefix(r.rel.URL(), "https://")}, Dir: t.TempDir()}
}

// waitStatus waits for the committed status to contain want (or the pod
// to exit).
func (r *run) waitStatus(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var status string
	for time.Now().Before(deadline) {
		select {
		case <-r.pod.Exited():
			t.Fatalf("the agent exited with %d before committing %q (its output follows)", r.pod.ExitCode(), want)
		default:
		}
		status, _ = r.git.Show("main", "status/"+r.name+".yaml")
		if strings.Contains(status, want) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no status with %q in 90s; status %q (the agent's output follows)", want, status)
}

func (r *run) logSays(t *testing.T, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if !strings.Contains(r.pod.Output(), `"msg":"`+m+`"`) {
			t.Errorf("the agent did not log %q:\n%s", m, r.pod.Output())
		}
	}
}

func (r *run) logLacks(t *testing.T, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if strings.Contains(r.pod.Output(), `"msg":"`+m+`"`) {
			t.Errorf("the agent logged %q with its Secret mounted", m)
		}
	}
}

// get is a GET from inside the pod's network.
func (r *run) get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := r.pod.HTTP().Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// containerPort is the rendered container's port of that name.
func (r *run) containerPort(t *testing.T, name string) int32 {
	t.Helper()
	for _, p := range r.deployment(t).Spec.Template.Spec.Containers[0].Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("the container has no port %q", name)
	return 0
}

// probesAndMetrics: the probes' paths answer on their named port, metrics
// on theirs.
func (r *run) probesAndMetrics(t *testing.T) {
	t.Helper()
	c := r.deployment(t).Spec.Template.Spec.Containers[0]
	for _, probe := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		g := probe.HTTPGet
		if code, body := r.get(t, fmt.Sprintf("http://127.0.0.1:%d%s", r.containerPort(t, g.Port.StrVal), g.Path)); code != http.StatusOK {
			t.Errorf("probe %s on port %s: %d %s", g.Path, g.Port.StrVal, code, body)
		}
	}
	if code, body := r.get(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", r.containerPort(t, "metrics"))); code != http.StatusOK || !strings.Contains(body, "kvgitops_") {
		t.Errorf("metrics: %d %.200s", code, body)
	}
}

// webhook: an authentic GitHub delivery to the port the webhook Service
// targets is accepted.
func (r *run) webhook(t *testing.T, key string) {
	t.Helper()
	port := r.serviceTarget(t, "kvgitops-webhook", "")
	body := []byte(`{"ref":"refs/heads/main"}`)
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/hook", port), bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "conformance-1")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := r.pod.HTTP().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("an authentic hook to the webhook Service's target port %d: %d", port, resp.StatusCode)
	}
}

// serviceTarget is the container port a rendered Service's port (named
// portName, or its first) routes to.
func (r *run) serviceTarget(t *testing.T, service, portName string) int32 {
	t.Helper()
	for _, o := range r.objects {
		if o.GetKind() != "Service" || o.GetName() != service {
			continue
		}
		var s corev1.Service
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &s); err != nil {
			t.Fatal(err)
		}
		for _, p := range s.Spec.Ports {
			if portName == "" || p.Name == portName {
				if p.TargetPort.StrVal != "" {
					return r.containerPort(t, p.TargetPort.StrVal)
				}
				return p.TargetPort.IntVal
			}
		}
	}
	t.Fatalf("no Service %s with port %q rendered", service, portName)
	return 0
}

// scrapedAsTheServiceMonitorSays: the ServiceMonitor's endpoint, followed
// through the Service it selects to the container, serves the metrics its
// PrometheusRule's alerts use.
func (r *run) scrapedAsTheServiceMonitorSays(t *testing.T) {
	t.Helper()
	var port, path string
	var selector map[string]string
	var exprs []string
	for _, o := range r.objects {
		switch o.GetKind() {
		case "ServiceMonitor":
			eps, _, _ := unstructured.NestedSlice(o.Object, "spec", "endpoints")
			if len(eps) != 1 {
				t.Fatalf("ServiceMonitor endpoints %v", eps)
			}
			ep := eps[0].(map[string]any)
			port, _ = ep["port"].(string)
			if path, _ = ep["path"].(string); path == "" {
				path = "/metrics"
			}
			selector, _, _ = unstructured.NestedStringMap(o.Object, "spec", "selector", "matchLabels")
		case "PrometheusRule":
			groups, _, _ := unstructured.NestedSlice(o.Object, "spec", "groups")
			for _, g := range groups {
				rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
				for _, rule := range rules {
					e, _ := rule.(map[string]any)["expr"].(string)
					exprs = append(exprs, e)
				}
			}
		}
	}
	service := ""
	for _, o := range r.objects {
		if o.GetKind() != "Service" {
			continue
		}
		match := len(selector) > 0
		for k, v := range selector {
			match = match && o.GetLabels()[k] == v
		}
		if match {
			service = o.GetName()
		}
	}
	if service == "" || len(exprs) == 0 {
		t.Fatalf("the ServiceMonitor (selector %v) selects no rendered Service, or no alert rules (%d)", selector, len(exprs))
	}
	code, body := r.get(t, fmt.Sprintf("http://127.0.0.1:%d%s", r.serviceTarget(t, service, port), path))
	if code != http.StatusOK {
		t.Fatalf("scrape %s port %s: %d", service, port, code)
	}
	for _, e := range exprs {
		for _, name := range metricNames(e) {
			if !strings.Contains(body, "# TYPE "+name+" ") && !strings.Contains(body, "\n"+name+"{") && !strings.Contains(body, "\n"+name+" ") {
				t.Errorf("alert expression %q uses %s, which the scrape lacks", e, name)
			}
		}
	}
}

// metricNames are the kvgitops_ metric names an expression uses.
func metricNames(expr string) []string {
	var out []string
	for i := strings.Index(expr, "kvgitops_"); i >= 0; {
		j := i
		for j < len(expr) && (expr[j] == '_' || expr[j] >= 'a' && expr[j] <= 'z' || expr[j] >= '0' && expr[j] <= '9') {
			j++
		}
		out = append(out, expr[i:j])
		next := strings.Index(expr[j:], "kvgitops_")
		if next < 0 {
			break
		}
		i = j + next
	}
	return out
}

func pgpPublicKey(t *testing.T) []byte {
	t.Helper()
	e, err := openpgp.NewEntity("Platform Team", "", "platform@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return b.Bytes()
}

func sshPublicKey(t *testing.T) []byte {
	t.Helper()
	key := t.TempDir() + "/key"
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return pub
}
