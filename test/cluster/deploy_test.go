//go:build realnode

package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kvgitops/kvgitops/test/gitserver"
	"github.com/kvgitops/kvgitops/test/kustomize"
	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// TestKvgitopsDeployedFromDeploy installs kvgitops as a user does: its
// image from hack/image (make image), deploy/ applied in its
// kustomization's order with its image pin, the config pointing at a git
// server and a release server inside the cluster's network, the Secrets
// created. Both replicas run under restricted settings (non-root,
// read-only root, no capabilities) and pass their probes, one holds the
// leader Lease, the leader commits to Git that the cluster is as desired
// (KubeVirt absent), and when its pod is deleted the standby leads.
func TestKvgitopsDeployedFromDeploy(t *testing.T) {
	t.Parallel() // each test has its own cluster
	ctx, c := nodeWithKvgitops(t, 5*time.Minute)
	d := deploy(ctx, t, c, releases.NewServer(nil), "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n  state: Absent\n")
	git, kube, created := d.git, d.kube, d.created
	err := c.until(ctx, 3*time.Minute, "both replicas available", func() bool {
		d, err := kube.AppsV1().Deployments("kvgitops").Get(ctx, "kvgitops", metav1.GetOptions{})
		return err == nil && d.Status.AvailableReplicas == 2
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, podReport(ctx, kube))
	}
	t.Logf("2 replicas available %s after the Secrets", time.Since(created).Round(100*time.Millisecond))
	report := podReport(ctx, kube)
	if !strings.Contains(report, `"msg":"Webhook off"`) {
		t.Errorf("no replica says its webhook is off (no webhook Secret):\n%s", report)
	}
	if !strings.Contains(report, `"msg":"Release token off"`) {
		t.Errorf("no replica says it asks for releases without a token (no token Secret):\n%s", report)
	}
	var status string
	err = c.until(ctx, 2*time.Minute, "the leader's status in Git", func() bool {
		status, _ = git.Show("main", "status/real.yaml")
		return strings.Contains(status, "reason: UpToDate") && strings.Contains(status, "message: KubeVirt is absent, as desired")
	})
	if err != nil {
		t.Fatalf("%v; status %q\n%s", err, status, podReport(ctx, kube))
	}
	t.Logf("status committed %s after the Secrets", time.Since(created).Round(100*time.Millisecond))
	leader := holder(ctx, t, kube)
	// The leader's pod goes (a node drain, an eviction): the standby leads.
	pod, _, _ := strings.Cut(leader, "_")
	if err := kube.CoreV1().Pods("kvgitops").Delete(ctx, pod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	var next string
	if err := c.until(ctx, 2*time.Minute, "the standby leading", func() bool {
		next = holder(ctx, t, kube)
		return next != "" && !strings.HasPrefix(next, pod+"_")
	}); err != nil {
		t.Fatalf("%v: the Lease is held by %q\n%s", err, next, podReport(ctx, kube))
	}
	t.Logf("%s leads %s after %s's pod was deleted", next, time.Since(deleted).Round(100*time.Millisecond), pod)
}

// catalogRefresh is how long the deployed agent reuses the release list.
const catalogRefresh = 2 * time.Second

// deployed is kvgitops running on a cluster, deployed from deploy/.
type deployed struct {
	git     *gitserver.Server
	kube    kubernetes.Interface
	created time.Time // when its Secrets were created
}

// deploy installs kvgitops as a user does: deploy/ applied in its
// kustomization's order with its image pin, the config pointing at a git
// server and rel inside the cluster's network (both stopped with the
// test), desired committed to clusters/real/kubevirt.yaml, the Git Secret
// created (and the webhook's, with webhookSecret).
func deploy(ctx context.Context, t *testing.T, c *Cluster, rel *releases.Server, desired string, webhookSecret ...string) deployed {
	t.Helper()
	t.Cleanup(rel.Close)
	git, err := gitserver.New(gitserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { git.Close() })
	gitURL, stopGit, err := c.Serve(git.Handler())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopGit)
	relURL, stopRel, err := c.Serve(rel.Handler())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopRel)
	user, err := git.User()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := user.CommitFile("clusters/real/kubevirt.yaml", []byte(desired), "desired"); err != nil {
		t.Fatal(err)
	}
	config := map[string]string{
		"KVGITOPS_REPO_URL": gitURL + "/repo.git", "KVGITOPS_DESIRED_PATH": "clusters/real/kubevirt.yaml", "KVGITOPS_CLUSTER_NAME": "real",
		"KVGITOPS_INTERVAL": "2s", "KVGITOPS_CATALOG_REFRESH": catalogRefresh.String(), "KVGITOPS_RELEASES_URL": relURL + releases.ListPath, "KVGITOPS_MANIFEST_BASE_URL": relURL + releases.DownloadPath,
		"KVGITOPS_RELEASE_CA_FILE": "/etc/kvgitops/git/ca.crt", "KVGITOPS_RELEASE_ALLOWED_NETWORKS": NodeIP + "/32",
	}
	data, err := kustomize.Render(config)
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.Apply(ctx, c.Config, data); err != nil {
		t.Fatalf("apply what kustomize renders of deploy/: %v", err)
	}
	ca, err := c.CAPEM()
	if err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(c.Config)
	// The Git Secret, as the README's install steps have it, and the
	// webhook's when asked for (optional: without it the agent has no
	// webhook) first: the pods wait for the Git Secret, and an optional
	// Secret that appears later reaches a running pod only at the kubelet's
	// next sync.
	for _, key := range webhookSecret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kvgitops-webhook", Namespace: "kvgitops"}, Data: map[string][]byte{"secret": []byte(key)}}
		if _, err := kube.CoreV1().Secrets("kvgitops").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kvgitops-git", Namespace: "kvgitops"}, Data: map[string][]byte{"ca.crt": ca}}
	if _, err := kube.CoreV1().Secrets("kvgitops").Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return deployed{git: git, kube: kube, created: time.Now()}
}

// holder is who holds kvgitops's leader Lease ("" for nobody).
func holder(ctx context.Context, t *testing.T, kube kubernetes.Interface) string {
	t.Helper()
	l, err := kube.CoordinationV1().Leases("kvgitops").Get(ctx, "kvgitops", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// podReport says how kvgitops's pods are, with their last log lines.
func podReport(ctx context.Context, kube kubernetes.Interface) string {
	pods, err := kube.CoreV1().Pods("kvgitops").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s: %s %+v\n", p.Name, p.Status.Phase, p.Status.ContainerStatuses)
		tail := int64(15)
		logs, err := kube.CoreV1().Pods("kvgitops").GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
		fmt.Fprintf(&b, "%s%v\n", logs, err)
	}
	return b.String()
}

// webhookReachesTheLeader posts a GitLab push hook to the standby's pod
// (through the apiserver's pod proxy, as a Service might route it): the
// standby passes it on, and the leader accepts it.
func webhookReachesTheLeader(ctx context.Context, t *testing.T, c *Cluster, kube kubernetes.Interface, secret string) {
	t.Helper()
	leaderPod, _, _ := strings.Cut(holder(ctx, t, kube), "_")
	pods, err := kube.CoreV1().Pods("kvgitops").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=kvgitops"})
	if err != nil {
		t.Fatal(err)
	}
	standby := ""
	for _, p := range pods.Items {
		if p.Name != leaderPod && p.DeletionTimestamp == nil {
			standby = p.Name
		}
	}
	if standby == "" {
		t.Fatalf("no standby beside the leader %s\n%s", leaderPod, podReport(ctx, kube))
	}
	res := kube.CoreV1().RESTClient().Post().Namespace("kvgitops").Resource("pods").Name(standby+":9292").SubResource("proxy").Suffix("hook").
		SetHeader("X-Gitlab-Token", secret).SetHeader("X-Gitlab-Event-UUID", "e2e-"+standby).Body([]byte(`{"object_kind":"push"}`)).Do(ctx)
	var code int
	res.StatusCode(&code)
	if code != 202 {
		t.Fatalf("the standby %s answered %d (%v) to an authentic hook", standby, code, res.Error())
	}
	if err := c.until(ctx, 30*time.Second, "the standby forwarding to the leader", func() bool {
		logs, _ := kube.CoreV1().Pods("kvgitops").GetLogs(standby, &corev1.PodLogOptions{}).DoRaw(ctx)
		return strings.Contains(string(logs), `"msg":"Webhook forwarded"`) && strings.Contains(string(logs), `"status":202`)
	}); err != nil {
		t.Errorf("%v\n%s", err, podReport(ctx, kube))
	}
}
