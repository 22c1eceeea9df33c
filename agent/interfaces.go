package agent

import (
	"context"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
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
	// Accepted tells the repository which signed commit set the content at
	// path last accepted (from the agent's memory, after a restart): signed
	// content there must only move forward from it.
	Accepted(path, setBy string)
	// Write commits a file when its bytes changed.
	Write(ctx context.Context, path string, data []byte, message string) error
	// ReadStatus reads the status file as last committed (where it is
	// written, which may be another branch), once, to migrate the memory
	// an earlier version kept there.
	ReadStatus(ctx context.Context, path string) ([]byte, error)
}

// Cluster is what the agent needs from the cluster.
type Cluster interface {
	Observe(ctx context.Context) (*executor.Observation, error)
	// ObserveWorkloads reads every VMI, VM and migration into obs (what
	// planning a hop needs; a pass with nothing to do skips it).
	ObserveWorkloads(ctx context.Context, obs *executor.Observation) error
	Run(ctx context.Context, step planner.Step, opts executor.StepOptions) (executor.StepResult, error)
	// Event records a Kubernetes Event about KubeVirt; best effort.
	Event(ctx context.Context, warning bool, reason fault.Reason, message string)
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

// PeerReader reads other clusters' committed status files, each from the
// head of its branch status/<cluster>, which must be signed by its key (the
// one the fleet file lists): peers maps cluster → key. Each result carries
// its own error: a cluster without a branch has one whose reason is
// DesiredFileMissing; a status that cannot be proven (unsigned, signed by
// another key, too large, not a file) a stalling one that says why. The
// call's error (Git unreachable) is transient and fails the pass. It reads
// all of them in a constant number of round trips.
type PeerReader interface {
	PeerStatuses(ctx context.Context, peers map[string]string) (map[string]PeerRead, error)
}

// PeerRead is one peer's status file, or why there is none.
type PeerRead struct {
	Data []byte
	Err  error
}
