package stack

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"

	"github.com/kvgitops/kvgitops/test/simulator"
)

// Cluster is one more cluster of a fleet: its own apiserver (started by the
// caller) with a simulator, sharing the stack's Git and release servers.
type Cluster struct {
	Name       string
	Sim        *simulator.Simulator
	Kubeconfig string
}

// AddCluster prepares the cluster behind admin as deploy/ would (the
// agent's namespace), starts a simulator on it and writes its kubeconfig.
// The caller stops the simulator (c.Sim.Stop), before that cluster's
// apiserver: an apiserver waits out its shutdown timeout for open watches.
func (s *Stack) AddCluster(ctx context.Context, name string, admin *rest.Config, rolloutDelay time.Duration) (*Cluster, error) {
	if err := applyDeploy(ctx, admin, "namespace.yaml"); err != nil {
		return nil, err
	}
	sim, err := simulator.New(admin, simulator.Options{RolloutDelay: rolloutDelay, StrategyDelay: 20 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	if err := sim.Start(context.Background()); err != nil {
		return nil, err
	}
	c := &Cluster{Name: name, Sim: sim, Kubeconfig: filepath.Join(s.Dir, name+".kubeconfig")}
	if err := writeKubeconfig(admin, c.Kubeconfig); err != nil {
		sim.Stop()
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	return c, nil
}
