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
	restCfg, err := restConfig(c.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	src, err := newSource(c)
	if err != nil {
		return err
	}
	rc, err := c.rel.releaseClient()
	if err != nil {
		return err
	}
	exec, err := executor.New(restCfg, executor.Config{
		Namespace: c.kubevirtNamespace, Releases: rc, Logger: log, Hook: failpointHook(c.failpoint, log),
	})
	if err != nil {
		return err
	}
	metrics := agent.NewMetrics()
	a := agent.New(agent.Config{
		ClusterName: c.clusterName, DesiredPath: c.desiredPath, StatusPath: c.statusPath,
		Interval: c.interval, CatalogRefresh: c.catalogRefresh, Logger: log, Metrics: metrics,
	}, agent.GitRepo{Source: src, DesiredPath: c.desiredPath, FollowRewrites: c.followRewrites}, exec, catalogFunc(c))
	health := agent.NewHealth(a)
	log.Info("Agent starting", "version", version, "repo", src.URL(), "branch", c.branch, "cluster", c.clusterName, "leaderElect", c.leaderElect)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	serve := func(name, addr string, h http.Handler) error {
		if addr == "" || addr == "0" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s server: %w", name, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
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
	defer wg.Wait()

	if !c.leaderElect {
		health.SetLeading(true)
		return a.Run(ctx)
	}
	return runElected(ctx, c, restCfg, log, health, a)
}

// runElected runs the agent only while this replica holds the Lease. Losing
// it ends the process (the kubelet restarts it as a standby), so a stale
// leader never keeps acting.
func runElected(ctx context.Context, c runConfig, restCfg *rest.Config, log *slog.Logger, health *agent.Health, a *agent.Agent) error {
	ns := c.leaseNamespace
	if ns == "" {
		ns = podNamespace()
	}
	id, _ := os.Hostname()
	id = fmt.Sprintf("%s_%d", id, time.Now().UnixNano())
	kube, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: ns, Name: c.leaseName},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	var runErr error
	lost := false
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: c.leaseDuration, RenewDeadline: c.renewDeadline, RetryPeriod: c.retryPeriod,
		ReleaseOnCancel: true, Name: c.leaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Info("Leading", "lease", ns+"/"+c.leaseName, "identity", id)
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
