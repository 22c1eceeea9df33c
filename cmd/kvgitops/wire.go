package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/executor"
)

// run wires the agent and runs it until ctx ends; it returns after every
// server and loop it started has stopped.
func run(ctx context.Context, c runConfig, log *slog.Logger) error {
	// Everything local is checked before the cluster is touched.
	src, err := newSource(c)
	if err != nil {
		return err
	}
	rc, err := c.rel.releaseClient()
	if err != nil {
		return err
	}
	restCfg, err := restConfig(c.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	exec, err := executor.New(restCfg, executor.Config{
		Namespace: c.kubevirtNamespace, Releases: rc, Logger: log, Hook: failpointHook(c.failpoint, log),
	})
	if err != nil {
		return err
	}
	metrics := agent.NewMetrics()
	acfg := agent.Config{
		ClusterName: c.clusterName, DesiredPath: c.desiredPath, StatusPath: c.statusPath,
		Interval: c.interval, CatalogRefresh: c.catalogRefresh, Logger: log, Metrics: metrics,
	}
	var el *election
	if c.leaderElect {
		if el, err = newElection(c, restCfg); err != nil {
			return err
		}
		acfg.Fence = el.fence
	}
	a := agent.New(acfg, &agent.GitRepo{Source: src, DesiredPath: c.desiredPath, FollowRewrites: c.followRewrites}, exec, catalogFunc(c))
	health := agent.NewHealth(a)
	log.Info("Agent starting", "version", version, "repo", src.URL(), "branch", c.branch, "cluster", c.clusterName, "leaderElect", c.leaderElect)

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // stop the servers, then wait for them
	serve := func(name, addr string, h http.Handler) error {
		if addr == "" || addr == "0" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s server: %w", name, err)
		}
		srv := newHTTPServer(h, serverTimeouts)
		wg.Add(2)
		go func() { defer wg.Done(); _ = srv.Serve(ln) }()
		go func() {
			defer wg.Done()
			<-ctx.Done()
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			_ = srv.Shutdown(sctx)
		}()
		log.Info("Server listening", "server", name, "address", ln.Addr().String())
		return nil
	}
	if err := serve("metrics", c.metricsAddr, metrics.Handler()); err != nil {
		return err
	}
	if err := serve("health", c.healthAddr, health.Handler()); err != nil {
		return err
	}
	if c.webhookSecretFile != "" {
		secret, err := os.ReadFile(c.webhookSecretFile)
		if err != nil {
			return fmt.Errorf("webhook secret: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/hook", a.WebhookHandler([]byte(strings.TrimSpace(string(secret)))))
		if err := serve("webhook", c.webhookAddr, mux); err != nil {
			return err
		}
	}

	if !c.leaderElect {
		health.SetLeading(true)
		return a.Run(ctx)
	}
	return el.run(ctx, c, log, health, a)
}

// election holds a Lease; the agent runs only while it leads.
type election struct {
	kube     kubernetes.Interface
	ns, name string
	id       string
	lease    time.Duration
}

func newElection(c runConfig, restCfg *rest.Config) (*election, error) {
	ns := c.leaseNamespace
	if ns == "" {
		ns = podNamespace()
	}
	host, _ := os.Hostname()
	kube, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, err
	}
	return &election{kube: kube, ns: ns, name: c.leaseName, id: fmt.Sprintf("%s_%d", host, time.Now().UnixNano()), lease: c.leaseDuration}, nil
}

// fence reads the Lease from the API server: this replica may write only
// while the Lease names it and has not expired. It closes the window in
// which a paused leader wakes and acts before noticing it was replaced.
func (e *election) fence(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := e.kube.CoordinationV1().Leases(e.ns).Get(ctx, e.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("check the leader lease: %w", err)
	}
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	if holder != e.id {
		return fmt.Errorf("the leader lease is held by %q, not by this replica", holder)
	}
	if l.Spec.RenewTime != nil && time.Since(l.Spec.RenewTime.Time) > e.lease {
		return fmt.Errorf("the leader lease expired %s ago", (time.Since(l.Spec.RenewTime.Time) - e.lease).Round(time.Second))
	}
	return nil
}

// run runs the agent only while this replica holds the Lease. Losing it
// ends the process (the kubelet restarts it as a standby).
func (e *election) run(ctx context.Context, c runConfig, log *slog.Logger, health *agent.Health, a *agent.Agent) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.ns, Name: e.name},
		Client:     e.kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.id},
	}
	var runErr error
	lost := false
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: c.leaseDuration, RenewDeadline: c.renewDeadline, RetryPeriod: c.retryPeriod,
		ReleaseOnCancel: true, Name: e.name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Info("Leading", "lease", e.ns+"/"+e.name, "identity", e.id)
				health.SetLeading(true)
				runErr = a.Run(ctx)
			},
			OnStoppedLeading: func() {
				health.SetLeading(false)
				if ctx.Err() == nil {
					lost = true
				}
			},
		},
	})
	if err != nil {
		return err
	}
	le.Run(ctx)
	if lost {
		return errors.New("lost the leader lease; exiting so a standby takes over")
	}
	return runErr
}

func podNamespace() string {
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		return strings.TrimSpace(string(b))
	}
	return "kvgitops"
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return rest.InClusterConfig()
}

// failpointHook exits the process at a named executor point, as a SIGKILL
// would (end-to-end fault tests only).
func failpointHook(point string, log *slog.Logger) func(string) {
	if point == "" {
		return nil
	}
	return func(p string) {
		if p == point {
			log.Warn("Failpoint reached, exiting", "failpoint", p)
			os.Exit(137)
		}
	}
}

// timeouts bound how long a client may hold a connection of the agent's
// servers: a slow header, a slow body (a webhook trickled byte by byte), a
// slow reader of the answer, an idle keep-alive.
type timeouts struct{ header, read, write, idle time.Duration }

var serverTimeouts = timeouts{header: 10 * time.Second, read: 30 * time.Second, write: 30 * time.Second, idle: 60 * time.Second}

func newHTTPServer(h http.Handler, t timeouts) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.header, ReadTimeout: t.read, WriteTimeout: t.write,
		IdleTimeout: t.idle, MaxHeaderBytes: 64 << 10}
}
