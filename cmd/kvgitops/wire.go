package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/planner"
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
	var el *election
	metrics := agent.NewMetrics()
	execCfg := rest.CopyConfig(restCfg)
	identity := replicaIdentity()
	execCfg.UserAgent = "kvgitops/" + version + " (" + identity + ")"
	execCfg.WrapTransport = metrics.CountRequests
	if c.leaderElect {
		if el, err = newElection(c, restCfg, identity); err != nil {
			return err
		}
		// Every write to the cluster and every status push is made only
		// while this replica's Lease renewal is fresh.
		execCfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return el.guard.wrap(metrics.CountRequests(rt)) }
		src.SetPushGuard(el.guard.held)
	}
	exec, err := executor.New(execCfg, executor.Config{
		Namespace: c.kubevirtNamespace, Releases: rc, Logger: log, Hook: failpointHook(c.failpoint, log),
	})
	if err != nil {
		return err
	}
	acfg := agent.Config{
		ClusterName: c.clusterName, DesiredPath: c.desiredPath, RisksPath: c.risksPath, StatusPath: c.statusPath,
		Interval: c.interval, CatalogRefresh: c.catalogRefresh, Logger: log, Metrics: metrics,
		Memory: exec.Store(agentNamespace(c), memoryName, "memory.json", "memory"), Identity: identity, Hook: failpointHook(c.failpoint, log),
	}
	if el != nil {
		acfg.Fence = el.guard.held
	}
	repo := &agent.GitRepo{Source: src, DesiredPath: c.desiredPath, RisksPath: c.risksPath, FollowRewrites: c.followRewrites}
	if c.fleetPath != "" {
		acfg.Fleet, acfg.Peers, repo.MaxFileSize = true, repo, planner.MaxFleetSize
	}
	a := agent.New(acfg, repo, exec, catalogFunc(c))
	health := agent.NewHealth(a)
	log.Info("Agent starting", "version", version, "commit", commit, "identity", identity, "repo", src.URL(), "branch", c.branch, "cluster", c.clusterName, "fleet", c.fleetPath, "leaderElect", c.leaderElect)
	if !rc.Authenticated() {
		log.Info("Release token off", "reason", "no token file", "file", c.rel.tokenFile)
	}

	ctx, cancel := context.WithCancel(ctx)
	srv := &servers{ctx: ctx, log: log}
	defer func() { cancel(); srv.wg.Wait() }() // stop the servers, then wait for them
	if err := srv.start(c, metrics, health, a, el, identity); err != nil {
		return err
	}
	go trimMemory(ctx, time.Minute)
	if !c.leaderElect {
		health.SetLeading(true)
		return a.Run(ctx)
	}
	return el.run(ctx, c, log, health, a)
}

// servers are the agent's HTTP servers: metrics, health and (with a
// secret) the webhook receiver. They stop when ctx ends; wg waits for them.
type servers struct {
	ctx context.Context
	log *slog.Logger
	wg  sync.WaitGroup
}

func (s *servers) start(c runConfig, metrics *agent.Metrics, health *agent.Health, a *agent.Agent, el *election, identity string) error {
	if err := s.serve("metrics", c.metricsAddr, metrics.Handler()); err != nil {
		return err
	}
	if err := s.serve("health", c.healthAddr, health.Handler()); err != nil {
		return err
	}
	if c.webhookSecretFile == "" {
		return nil
	}
	// The key is read for each delivery: deploy/ mounts the Secret as
	// optional, so it may appear, or rotate, while the agent runs.
	secret, err := os.ReadFile(c.webhookSecretFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.log.Info("Webhook off", "reason", "no secret file (yet)", "file", c.webhookSecretFile)
	case err != nil:
		return fmt.Errorf("webhook secret: %w", err)
	case len(strings.TrimSpace(string(secret))) == 0:
		return fmt.Errorf("webhook secret %s is empty: an HMAC needs a key (delete the Secret to turn the webhook off)", c.webhookSecretFile)
	}
	key := func() []byte {
		b, _ := os.ReadFile(c.webhookSecretFile)
		return []byte(strings.TrimSpace(string(b)))
	}
	var hook http.Handler = a.WebhookHandler(key)
	if el != nil {
		_, port, err := net.SplitHostPort(c.webhookAddr)
		if err != nil {
			return fmt.Errorf("--webhook-addr %q: %w", c.webhookAddr, err)
		}
		hook = &hookForwarder{local: hook, leading: health.Leading, leader: el.leaderHook(port),
			client: &http.Client{}, id: identity, log: s.log}
	}
	mux := http.NewServeMux()
	mux.Handle("/hook", hook)
	return s.serve("webhook", c.webhookAddr, mux)
}

// serve listens on addr ("" or "0": not at all) until ctx ends.
func (s *servers) serve(name, addr string, h http.Handler) error {
	if addr == "" || addr == "0" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s server: %w", name, err)
	}
	srv := newHTTPServer(h, serverTimeouts)
	s.wg.Add(2)
	go func() { defer s.wg.Done(); _ = srv.Serve(ln) }()
	go func() {
		defer s.wg.Done()
		<-s.ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	}()
	s.log.Info("Server listening", "server", name, "address", ln.Addr().String())
	return nil
}

// memoryName is the ConfigMap that holds the agent's memory, in its own
// namespace (deploy/rbac-agent.yaml grants it by this name).
const memoryName = "kvgitops-memory"

// replicaIdentity names this process: in the Lease, the journal and the
// user agent of every request (so the apiserver's audit log tells
// replicas apart): its host name, a start time, and, where deploy/ gives
// it (POD_IP), "@" and the pod IP, at which standbys forward webhooks to
// the leader.
func replicaIdentity() string {
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s_%d", host, time.Now().UnixNano())
	if ip, err := netip.ParseAddr(os.Getenv("POD_IP")); err == nil {
		id += "@" + ip.String()
	}
	return id
}

// agentNamespace is where the agent keeps its Lease and journal.
func agentNamespace(c runConfig) string {
	if c.leaseNamespace != "" {
		return c.leaseNamespace
	}
	return podNamespace()
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

// failpointHook acts at a named executor point (end-to-end fault tests
// only): "point" exits the process as a SIGKILL would; "point:stop" stops it
// (SIGSTOP to itself) as a long pause would, until someone sends SIGCONT.
func failpointHook(spec string, log *slog.Logger) func(string) {
	if spec == "" {
		return nil
	}
	point, action, _ := strings.Cut(spec, ":")
	return func(p string) {
		if p != point {
			return
		}
		if action == "stop" {
			log.Warn("Failpoint reached, stopping", "failpoint", p)
			// SIGSTOP reaches the process's threads one by one: this one
			// may run on for a moment, into the next write. It waits for
			// the SIGCONT that ends the stop instead.
			cont := make(chan os.Signal, 1)
			signal.Notify(cont, syscall.SIGCONT)
			_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
			<-cont
			signal.Stop(cont)
			log.Warn("Failpoint resumed", "failpoint", p)
			return
		}
		log.Warn("Failpoint reached, exiting", "failpoint", p)
		os.Exit(137)
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
