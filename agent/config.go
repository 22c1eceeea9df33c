package agent

import (
	"context"
	"log/slog"
	"path"
	"time"
)

// Config configures an Agent. Zero values take the defaults.
type Config struct {
	ClusterName string
	DesiredPath string // default "kubevirt.yaml"
	// RisksPath is the repository's own upgrade-risks file, optional.
	// Default "kubevirt-risks.yaml" beside the desired file.
	RisksPath  string
	StatusPath string        // default "status/<cluster>.yaml"
	Interval   time.Duration // default 1m
	// Jitter spreads polls of many agents: each wait is Interval ± Jitter.
	Jitter float64 // default 0.1
	// CatalogRefresh is how long a fetched catalog is used. Default 15m.
	CatalogRefresh time.Duration
	// MaxBackoff caps the wait after failures. Default 5m.
	MaxBackoff time.Duration
	Clock      func() time.Time
	Logger     *slog.Logger
	Metrics    *Metrics
	// Fence, when set, is asked right before every write (a cluster step, a
	// status commit) and must fail unless this replica still leads: leader
	// election alone lets a paused leader act once more when it wakes.
	Fence func(ctx context.Context) error
	// Memory, when set, keeps what the agent must remember (anchors,
	// applied state, plan, history, each step's intent and outcome until a
	// status commit holds it) durable in the cluster. Without it the agent
	// remembers nothing across restarts.
	Memory Store
	// Identity names this replica in the journal (its leader identity).
	Identity string
	// Fleet: DesiredPath is a fleet file (planner.ParseFleet), this
	// cluster's desired state is its share of it, and a plan starts only
	// when the ring gate, fed by Peers, opens.
	Fleet bool
	// Peers reads the other clusters' committed status files (fleets).
	Peers PeerReader
	// Hook is called at named points of a step (fault tests only).
	Hook func(point string)
}

func (c *Config) defaults() {
	if c.ClusterName == "" {
		c.ClusterName = "default"
	}
	if c.DesiredPath == "" {
		c.DesiredPath = "kubevirt.yaml"
	}
	if c.RisksPath == "" {
		c.RisksPath = DefaultRisksPath(c.DesiredPath)
	}
	if c.StatusPath == "" {
		c.StatusPath = "status/" + c.ClusterName + ".yaml"
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.Jitter == 0 {
		c.Jitter = 0.1
	}
	if c.CatalogRefresh == 0 {
		c.CatalogRefresh = 15 * time.Minute
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Minute
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics()
	}
}

// DefaultRisksPath is the risks file beside a desired file.
func DefaultRisksPath(desired string) string {
	return path.Join(path.Dir(desired), "kubevirt-risks.yaml")
}
