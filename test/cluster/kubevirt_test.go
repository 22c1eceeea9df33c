//go:build realnode

package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kvgitops/kvgitops/test/gitserver"
	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// The real node's KubeVirt releases (hack/kubevirt.sh NODE_TAGS): one hop.
var nodeTags = []string{"v1.7.0", "v1.8.4"}

// Releases the catalog lists whose operator never becomes ready: the node
// has no images of noImages; crashing's operator image exits at start.
const (
	noImages = "v1.7.1"
	crashing = "v1.7.2"
)

var (
	kvGVR  = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "kubevirts"}
	vmiGVR = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachineinstances"}
	vmGVR  = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachines"}
)

// TestKubeVirtOnARealNode drives KubeVirt's own components through
// kvgitops deployed from deploy/ on two real nodes: the agent installs
// v1.7.0 (the release's operator manifest; virt-operator deploys virt-api,
// virt-controller and virt-handler as real pods), a VMI and a VM
// (runStrategy Always) run under qemu TCG, the agent upgrades to v1.8.4,
// and after each step every component runs the step's version and nothing
// else; the guests keep their qemu processes (PID and start time) through
// the hop and are labelled outdated; then the desired file turns
// LiveMigrate on (the agent's Configure step) and KubeVirt's own workload
// updater live-migrates both guests to v1.8.4 launchers on the other
// node, never leaving Running; the agent then removes KubeVirt and nothing
// the install created is left.
func TestKubeVirtOnARealNode(t *testing.T) {
	t.Parallel() // each test has its own cluster
	ctx, c, builds := kubevirtCluster(t, 2, 15*time.Minute)
	if err := c.Import(func(w io.Writer) error { return WriteCrashingOperator(w, filepath.Join(shared.dir, "app"), crashing) }); err != nil {
		t.Fatal(err)
	}

	// The catalog lists the releases whose images the node has, and the
	// two broken ones (v1.7.0's manifest naming their tags).
	manifests := map[string][]byte{}
	for _, tag := range nodeTags {
		m, err := releases.FromResourceGenerator(builds.Operators, tag)
		if err != nil {
			t.Fatal(err)
		}
		manifests[tag] = m
	}
	rel := releases.NewServer(append([]string{noImages, crashing}, nodeTags...))
	for _, tag := range []string{noImages, crashing, nodeTags[0], nodeTags[1]} {
		m, ok := manifests[tag]
		if !ok {
			m = bytes.ReplaceAll(manifests[nodeTags[0]], []byte(nodeTags[0]), []byte(tag))
		}
		rel.Mutate(tag+"/kubevirt-operator.yaml", func([]byte) []byte { return m })
	}
	dyn := dynamic.NewForConfigOrDie(c.Config)
	var real nodeRecording
	record := func(from, to string) *simulator.Recorder {
		rec := simulator.Record(dyn, from, to)
		t.Cleanup(func() { rec.Finish() })
		return rec
	}
	before := snapshot(ctx, t, c)
	rec := record("", nodeTags[0])
	d := deploy(ctx, t, c, rel, desiredKubeVirt(nodeTags[0]), webhookKey)
	r := &realKubeVirt{t: t, c: c, kube: d.kube, dyn: dyn, git: d.git}

	// Install.
	r.step(ctx, "install "+nodeTags[0], nodeTags[0], 8*time.Minute, d.created)
	real.install = rec.FinishLogging(t.Logf)
	// One plan: virt-operator's first pass drops the desired file's empty
	// workloadUpdateMethods from the CR, which is no drift to configure.
	if h, _ := r.status()["history"].([]any); len(h) == 0 || fmt.Sprint(h[0]) != fmt.Sprint(h[len(h)-1]) ||
		!strings.Contains(fmt.Sprint(h[0]), "action:Install") || !strings.Contains(fmt.Sprint(h[0]), "result:Succeeded") {
		t.Errorf("the install's history, want one Install plan, Succeeded: %v", h)
	}
	created := snapshot(ctx, t, c)

	// A push hook that reaches the standby goes on to the leader.
	webhookReachesTheLeader(ctx, t, c, d.kube, webhookKey)

	// Guests.
	vms := r.startGuests(ctx)

	// The same scenario, less the broken releases, on the simulator beside
	// it (started while the broken releases below mostly wait on their
	// timeouts); the KubeVirt CR's states of every step recorded on both.
	simulated := simulateNode(t, ctx, manifests, kvgitopsBinary())

	// Two releases whose operator never becomes ready, one after the
	// other: the agent says so within the hop's timeout and touches
	// nothing else; KubeVirt and the guests run on. Each is withdrawn
	// before the next is asked for (kvgitops's path to a new minor goes
	// through the current minor's latest patch, so it would be tried
	// again); the agent moves on from the stuck state.
	r.brokenRelease(ctx, noImages, 40*time.Second, vms, "ErrImagePull", "ImagePullBackOff")
	rel.Withdraw(noImages)
	time.Sleep(catalogRefresh + time.Second) // the agent's catalog is older than it reuses
	r.brokenRelease(ctx, crashing, 25*time.Second, vms, "CrashLoopBackOff", "Error")
	rel.Withdraw(crashing)
	time.Sleep(catalogRefresh + time.Second)

	// The hop from the stuck state: the new operator replaces the stuck one.
	rec = record(nodeTags[0], nodeTags[1])
	r.commit(desiredKubeVirt(nodeTags[1]), "upgrade")
	r.step(ctx, "upgrade to "+nodeTags[1], nodeTags[1], 8*time.Minute, time.Now())
	real.hop = rec.FinishLogging(t.Logf)
	r.guestsUntouched(ctx, vms)

	// Between this hop and the next step, KubeVirt itself moves the guests.
	r.migrateGuests(ctx, vms)

	// Removal: the guests go first (kvgitops refuses to remove KubeVirt
	// under running VMIs), then KubeVirt.
	r.stopGuests(ctx)
	rec = record(nodeTags[1], nodeTags[1])
	r.commit(absent, "remove")
	removed := time.Now()
	r.waitStatus(ctx, 6*time.Minute, "KubeVirt absent", func(s map[string]any) bool {
		return s["reason"] == "UpToDate" && strings.Contains(fmt.Sprint(s["message"]), "absent")
	})
	real.removal = rec.FinishLogging(t.Logf)
	t.Logf("KubeVirt removed %s after the commit", time.Since(removed).Round(time.Second))
	after := snapshot(ctx, t, c)
	var left []string
	for k := range created {
		if !before[k] && after[k] && !kvgitopsOwn(k) {
			left = append(left, k)
		}
	}
	slices.Sort(left)
	if len(left) > 0 {
		t.Errorf("left after removal, of what the install created: %v", left)
	}
	sim, err := simulated()
	if err != nil {
		t.Fatal(err)
	}
	compareWithSimulator(t, real, sim)
}

// brokenRelease asks for tag, whose operator pod fails for one of
// reasons (the kubelet's waiting or terminated reason), with hopTimeout:
// the agent stalls on the rollout within the timeout, saying how far it
// got, and virt-api, virt-controller, virt-handler and the guests run on
// at the installed release.
func (r *realKubeVirt) brokenRelease(ctx context.Context, tag string, hopTimeout time.Duration, vms []guest, reasons ...string) {
	r.t.Helper()
	at := time.Now()
	r.commit(desiredKubeVirt(tag)+"  hopTimeout: "+hopTimeout.String()+"\n", "release "+tag)
	sawProgress := false
	s := r.waitStatus(ctx, hopTimeout+3*time.Minute, "the stuck rollout of "+tag+" reported", func(s map[string]any) bool {
		if s["reason"] == "HopInProgress" && strings.Contains(fmt.Sprint(s["message"]), "rollout: virt-operator "+tag+",") {
			sawProgress = true
		}
		// For this commit: the last broken release's HopTimeout stays in
		// the status file until the agent has read it.
		current := strings.Contains(fmt.Sprint(s["desiredRevision"]), r.rev)
		return current && (s["reason"] == "HopTimeout" || s["reason"] == "OperatorRolloutFailed")
	}, "Failed")
	r.t.Logf("release %s: %s %s after the commit: %s", tag, s["reason"], time.Since(at).Round(time.Second), s["message"])
	// Progress reaches Git every 30 s at most: a longer timeout shows it.
	if !sawProgress && hopTimeout > 30*time.Second {
		r.t.Errorf("while the rollout of %s was stuck the status file never said how far it got", tag)
	}
	if msg := fmt.Sprint(s["message"]); !strings.Contains(msg, "virt-operator "+tag) || !strings.Contains(msg, "replicas updated") ||
		!strings.Contains(msg, "kubectl -n kubevirt get pods -l kubevirt.io=virt-operator") {
		r.t.Errorf("the stuck rollout's message %q does not say how far the operator got and where its pods say why", msg)
	}
	if why, err := r.operatorPodFailure(ctx, tag); err != nil || !slices.Contains(reasons, why) {
		r.t.Errorf("release %s: its operator pod %q, %v; want one of %v", tag, why, err, reasons)
	}
	if err := r.componentsAt(ctx, nodeTags[0], "virt-api", "virt-controller", "virt-handler"); err != nil {
		r.t.Errorf("after the stuck rollout of %s: %v", tag, err)
	}
	r.guestsRun(ctx, vms)
}

// operatorPodFailure is why a virt-operator pod on tag's image is not
// running: its container's waiting reason, or, between two restarts, the
// reason it last terminated.
func (r *realKubeVirt) operatorPodFailure(ctx context.Context, tag string) (string, error) {
	pods, err := r.kube.CoreV1().Pods("kubevirt").List(ctx, metav1.ListOptions{LabelSelector: "kubevirt.io=virt-operator"})
	if err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if !strings.HasSuffix(cs.Image, ":"+tag) {
				continue
			}
			if w := cs.State.Waiting; w != nil && w.Reason != "ContainerCreating" {
				return w.Reason, nil
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				return t.Reason, nil
			}
		}
	}
	return "", fmt.Errorf("no virt-operator pod of %s waiting or terminated", tag)
}

// desiredKubeVirt is the desired file for tag on the real nodes: qemu TCG (no
// usable KVM here), one replica of virt-api and virt-controller, no
// workload update method, so the VMIs stay on their launchers, accepted as
// such (migratingKubeVirt turns LiveMigrate on). KVM here (nested)
// reports kvm64 as the host model, which KubeVirt's default
// obsoleteCPUModels holds: no node would be labelled able to take a kvm64
// guest by migration (virt-controller: "Migration cannot proceed since no
// node is suitable to run the required CPU model"); the list is replaced by
// one without it.
func desiredKubeVirt(tag string) string {
	return fmt.Sprintf(`apiVersion: kvgitops.dev/v1alpha1
kind: KubeVirtDesiredState
spec:
  version: %s
  workloads:
    unmovable: Accept
  kubevirtConfig:
    workloadUpdateStrategy:
      workloadUpdateMethods: []
    configuration:
      obsoleteCPUModels: {"486": true, pentium: true}
      developerConfiguration:
        useEmulation: true
    infra:
      replicas: 1
`, tag)
}

// migratingKubeVirt is desiredKubeVirt with KubeVirt's default update
// method (outdated VMIs are live-migrated; the agent's hop waits for
// them), VMIs that will not move refused.
func migratingKubeVirt(tag string) string {
	d := strings.Replace(desiredKubeVirt(tag), "workloadUpdateMethods: []", "workloadUpdateMethods: [LiveMigrate]", 1)
	return strings.Replace(d, "    unmovable: Accept\n", "    unmovable: Refuse\n", 1)
}

// webhookKey is the webhook Secret of the deployed agent.
const webhookKey = "a-webhook-key-for-the-test"

// absent is the desired file that removes KubeVirt.
const absent = "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n  state: Absent\n"

type realKubeVirt struct {
	t    *testing.T
	c    *Cluster
	kube kubernetes.Interface
	dyn  dynamic.Interface
	git  *gitserver.Server
	rev  string // the last desired commit of the test ("": deploy's)
}

// commit commits the desired file.
func (r *realKubeVirt) commit(desired, msg string) {
	r.t.Helper()
	u, err := r.git.User()
	if err != nil {
		r.t.Fatal(err)
	}
	if r.rev, err = u.CommitFile("clusters/real/kubevirt.yaml", []byte(desired), msg); err != nil {
		r.t.Fatal(err)
	}
}

// status is the agent's status file, parsed.
func (r *realKubeVirt) status() map[string]any {
	text, err := r.git.Show("main", "status/real.yaml")
	if err != nil {
		return nil
	}
	var s map[string]any
	if yaml.Unmarshal([]byte(text), &s) != nil {
		return nil
	}
	return s
}

// waitStatus waits until ok holds for the status file; a phase the agent
// does not leave by itself ends the wait, unless it is one of expected.
func (r *realKubeVirt) waitStatus(ctx context.Context, limit time.Duration, what string, ok func(map[string]any) bool, expected ...string) map[string]any {
	r.t.Helper()
	var s map[string]any
	stalled := false
	err := r.c.until(ctx, limit, what, func() bool {
		s = r.status()
		if s == nil {
			return false
		}
		if ok(s) {
			return true
		}
		// A phase the agent does not leave by itself, for the commit
		// waited on (not the one before), ends the wait.
		phase, _ := s["phase"].(string)
		current := strings.Contains(fmt.Sprint(s["desiredRevision"]), r.rev)
		stalled = current && (phase == "Failed" || phase == "Refused" || phase == "Invalid") && !slices.Contains(expected, phase)
		return stalled
	})
	if err != nil || stalled {
		r.t.Fatalf("%s: %v; the status file: %s: %s\n%s", what, err, s["reason"], s["message"], r.report(ctx))
	}
	return s
}

// step waits for the agent to say the cluster runs tag, then checks the
// cluster itself: the CR and every component.
func (r *realKubeVirt) step(ctx context.Context, what, tag string, limit time.Duration, since time.Time) {
	r.t.Helper()
	r.waitStatus(ctx, limit, what, func(s map[string]any) bool {
		observed, _ := s["observed"].(map[string]any)
		return s["reason"] == "UpToDate" && observed["version"] == tag
	})
	r.t.Logf("%s: the agent's status says done %s after the commit", what, time.Since(since).Round(time.Second))
	r.timeline(ctx, what, since)
	if err := r.componentsAt(ctx, tag); err != nil {
		r.t.Fatalf("%s: %v\n%s", what, err, r.report(ctx))
	}
}

// componentsAt checks the cluster runs tag and nothing else: the CR
// observed, targeted and Available at tag; the operator, virt-api,
// virt-controller and virt-handler workloads and every one of their pods
// on tag's images, ready.
func (r *realKubeVirt) componentsAt(ctx context.Context, tag string, only ...string) error {
	kv, err := r.dyn.Resource(kvGVR).Namespace("kubevirt").Get(ctx, "kubevirt", metav1.GetOptions{})
	if err != nil {
		return err
	}
	observed, _, _ := unstructured.NestedString(kv.Object, "status", "observedKubeVirtVersion")
	target, _, _ := unstructured.NestedString(kv.Object, "status", "targetKubeVirtVersion")
	phase, _, _ := unstructured.NestedString(kv.Object, "status", "phase")
	if observed != tag || target != tag || phase != "Deployed" || !condition(kv, "Available") {
		return fmt.Errorf("the KubeVirt CR: observed %q target %q phase %q Available %v, want %s Deployed", observed, target, phase, condition(kv, "Available"), tag)
	}
	if len(only) == 0 {
		only = []string{"virt-operator", "virt-api", "virt-controller", "virt-handler"}
	}
	want := map[string]bool{}
	for _, c := range only {
		want[c] = false
	}
	pods, err := r.kube.CoreV1().Pods("kubevirt").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		comp := p.Labels["kubevirt.io"]
		if _, ok := want[comp]; !ok {
			continue
		}
		want[comp] = true
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			if !strings.HasPrefix(cs.Image, KubeVirtRegistry+"/") || !strings.HasSuffix(cs.Image, ":"+tag) {
				return fmt.Errorf("pod %s container %s runs %s, not %s (a mixed install)", p.Name, cs.Name, cs.Image, tag)
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if !cs.Ready {
				return fmt.Errorf("pod %s container %s not ready", p.Name, cs.Name)
			}
		}
	}
	for comp, seen := range want {
		if !seen {
			return fmt.Errorf("no %s pod", comp)
		}
	}
	return nil
}

func condition(u *unstructured.Unstructured, typ string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			return m["status"] == "True"
		}
	}
	return false
}

// guest is a running VMI and its qemu process.
type guest struct {
	name      string
	pid       int
	startTime string // /proc/<pid>/stat field 22: changes if the PID is reused
}

// guestSpec is a disk-less guest with a CPU limit. With one, virt-handler
// does not ask libvirt for a parallel (multifd) migration, which qemu 7.2
// here (Debian 12's; KubeVirt's images carry 9–10) breaks at random: the
// target's qemu fails "multifd: received packet magic 5145564d expected
// 11223344", or the source's "migration out" job hangs with the guest
// paused while its VMI says Running.
const guestSpec = `
  domain:
    resources: {requests: {memory: 64Mi}, limits: {cpu: 500m}}
    devices: {autoattachPodInterface: false, autoattachGraphicsDevice: false, autoattachMemBalloon: false}
  terminationGracePeriodSeconds: 5
`

// startGuests starts a VMI and a VM (runStrategy Always) in namespace vms:
// disk-less guests whose firmware keeps looking for something to boot.
func (r *realKubeVirt) startGuests(ctx context.Context) []guest {
	r.t.Helper()
	objs := "apiVersion: v1\nkind: Namespace\nmetadata: {name: vms}\n---\n" +
		"apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: tiny, namespace: vms}\nspec:" + guestSpec +
		"---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: always, namespace: vms}\nspec:\n  runStrategy: Always\n  template:\n    spec:" +
		strings.ReplaceAll(guestSpec, "\n  ", "\n      ")
	created := time.Now()
	if err := testenv.Apply(ctx, r.c.Config, []byte(objs)); err != nil {
		r.t.Fatal(err)
	}
	var gs []guest
	for _, name := range []string{"tiny", "always"} {
		var g guest
		err := r.c.until(ctx, 3*time.Minute, "VMI "+name+" Running with its qemu", func() bool {
			vmi, err := r.dyn.Resource(vmiGVR).Namespace("vms").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			phase, _, _ := unstructured.NestedString(vmi.Object, "status", "phase")
			g.pid, g.startTime = qemuOf("vms", name)
			return phase == "Running" && g.pid != 0
		})
		if err != nil {
			r.t.Fatalf("%v\n%s", err, r.report(ctx))
		}
		g.name = name
		gs = append(gs, g)
	}
	r.t.Logf("2 guests Running under TCG %s after create (qemu %d, %d)", time.Since(created).Round(100*time.Millisecond), gs[0].pid, gs[1].pid)
	return gs
}

// guestsUntouched checks each guest runs in the same qemu process, is
// Running, and is labelled outdated (KubeVirt's virt-controller: its
// launcher is of the old release and no update method moves it).
func (r *realKubeVirt) guestsUntouched(ctx context.Context, gs []guest) {
	r.t.Helper()
	for _, g := range gs {
		var vmi *unstructured.Unstructured
		err := r.c.until(ctx, 2*time.Minute, "VMI "+g.name+" labelled outdated", func() bool {
			var err error
			vmi, err = r.dyn.Resource(vmiGVR).Namespace("vms").Get(ctx, g.name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			_, outdated := vmi.GetLabels()["kubevirt.io/outdatedLauncherImage"]
			return outdated
		})
		if err != nil {
			r.t.Errorf("%v: labels %v", err, vmi.GetLabels())
		}
	}
	r.guestsRun(ctx, gs)
	s := r.status()
	if w, _ := s["workloads"].(map[string]any); w == nil {
		r.t.Errorf("the status file has no workloads section after the hop: %v", s)
	} else {
		r.t.Logf("the status file's workloads after the hop: %v", w)
	}
}

// guestsRun checks each guest is Running in the qemu process it started
// in.
func (r *realKubeVirt) guestsRun(ctx context.Context, gs []guest) {
	r.t.Helper()
	for _, g := range gs {
		phase := ""
		if vmi, err := r.dyn.Resource(vmiGVR).Namespace("vms").Get(ctx, g.name, metav1.GetOptions{}); err == nil {
			phase, _, _ = unstructured.NestedString(vmi.Object, "status", "phase")
		}
		pid, st := qemuOf("vms", g.name)
		if phase != "Running" || pid != g.pid || st != g.startTime {
			r.t.Errorf("guest %s: %s, qemu %d (started %s), want Running in qemu %d (started %s)", g.name, phase, pid, st, g.pid, g.startTime)
		}
	}
}

// stopGuests deletes the VM and the VMI and waits until they are gone.
func (r *realKubeVirt) stopGuests(ctx context.Context) {
	r.t.Helper()
	_ = r.dyn.Resource(vmGVR).Namespace("vms").Delete(ctx, "always", metav1.DeleteOptions{})
	_ = r.dyn.Resource(vmiGVR).Namespace("vms").Delete(ctx, "tiny", metav1.DeleteOptions{})
	if err := r.c.until(ctx, 3*time.Minute, "the guests gone", func() bool {
		l, err := r.dyn.Resource(vmiGVR).Namespace("vms").List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0
	}); err != nil {
		r.t.Fatalf("%v\n%s", err, r.report(ctx))
	}
}

// qemuOf finds the guest's qemu process (the node's PIDs are visible from
// here: its PID namespace is a child of ours).
func qemuOf(ns, name string) (int, string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), "qemu-system") || !strings.Contains(string(cmdline), "guest="+ns+"_"+name+"\x00") &&
			!strings.Contains(string(cmdline), "guest="+ns+"_"+name+",") {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name, which ends with ')'.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 19 {
			return pid, f[19]
		}
	}
	return 0, ""
}

// report says how KubeVirt's and kvgitops's pods are.
func (r *realKubeVirt) report(ctx context.Context) string {
	var b strings.Builder
	for _, ns := range []string{"kubevirt", "vms"} {
		pods, err := r.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "pod %s/%s: %s", ns, p.Name, p.Status.Phase)
			for _, cs := range p.Status.ContainerStatuses {
				fmt.Fprintf(&b, " [%s %s ready=%v restarts=%d %+v]", cs.Name, cs.Image, cs.Ready, cs.RestartCount, cs.State)
			}
			b.WriteString("\n")
		}
	}
	b.WriteString(podReport(ctx, r.kube))
	return b.String()
}

// kubevirtBuilds finds KubeVirt's builds; without them the test fails
// (make kubevirt builds them), never skips.
func kubevirtBuilds(t *testing.T) KubeVirtBuilds {
	t.Helper()
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	b := KubeVirtBuilds{Operators: filepath.Join(cache, "kvgitops", "virt-operator"), Components: filepath.Join(cache, "kvgitops", "kubevirt")}
	if d := os.Getenv("OPERATOR_DIR"); d != "" {
		b.Operators = d
	}
	if d := os.Getenv("KUBEVIRT_DIR"); d != "" {
		b.Components = d
	}
	for _, tag := range nodeTags {
		for _, f := range []string{filepath.Join(b.Operators, tag, "virt-operator"), filepath.Join(b.Components, tag, "virt-launcher"), filepath.Join(b.Components, "rootfs.tar")} {
			if _, err := os.Stat(f); err != nil {
				t.Fatalf("%v: run make kubevirt (it builds KubeVirt's components)", err)
			}
		}
	}
	return b
}
