package agent

import (
	"context"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/planner"
)

// Repo is what the agent needs from Git.
type Repo interface {
	// Head returns the branch head revision ("" for an empty branch). When
	// since is set, the head must descend from it, or the error says the
	// history was rewritten.
	Head(ctx context.Context, since string) (string, error)
	// Read returns a file at a revision and, when signatures are verified,
	// who signed the commit that set it and which commit that was.
	Read(ctx context.Context, rev, path string) (data []byte, from Provenance, err error)
	// Accepted tells the repository which signed commit set the desired
	// content last applied (from the status file, after a restart): signed
	// content must only move forward from it.
	Accepted(setBy string)
	// Write commits a file when its bytes changed.
	Write(ctx context.Context, path string, data []byte, message string) error
}

// Cluster is what the agent needs from the cluster.
type Cluster interface {
	Observe(ctx context.Context) (*executor.Observation, error)
	Run(ctx context.Context, step planner.Step, opts executor.StepOptions) (executor.StepResult, error)
	// Event records a Kubernetes Event about KubeVirt; best effort.
	Event(ctx context.Context, warning bool, reason, message string)
	// RestoreCR puts spec.imageTag and spec.imageRegistry back while the
	// operator still targets and runs version; it reports whether it wrote.
	RestoreCR(ctx context.Context, version, imageTag, imageRegistry string) (bool, error)
}

// CatalogFunc returns the release catalog.
type CatalogFunc func(ctx context.Context) (*planner.Catalog, error)

// Provenance is where verified content came from: the signer and the
// commit that set it. Empty when signatures are not verified.
type Provenance struct {
	Signer string
	SetBy  string
}

// PeerReader reads another cluster's committed status file; a cluster
// without one is an error whose reason is DesiredFileMissing.
type PeerReader interface {
	PeerStatus(ctx context.Context, cluster string) ([]byte, error)
}
