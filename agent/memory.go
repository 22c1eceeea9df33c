package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
)

// Store keeps one document durable in the cluster, in an object the agent
// owns, written with resourceVersion preconditions (executor.Store).
type Store interface {
	// Load returns the document, nil when there is none yet.
	Load(ctx context.Context) ([]byte, error)
	Save(ctx context.Context, data []byte) error
}

// The memory document's identity and bound (a ConfigMap holds at most
// 1 MiB; the journal's bounds keep the memory far below this).
const (
	MemoryKind    = "KubeVirtAgentMemory"
	maxMemorySize = 768 << 10
)

// Memory is what the agent remembers across restarts and leader changes.
// It lives in the cluster, never in Git: the status file is output only,
// and nothing read back from it decides anything (docs/security.md).
type Memory struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Cluster    string `json:"cluster"`
	// Seen is the newest head of the desired branch known to descend from
	// what was acted on: a later head must descend from it.
	Seen string `json:"seen,omitempty"`
	// Accepted is, per path, the signed commit that set the content last
	// accepted: signed content only moves forward from it.
	Accepted map[string]string `json:"accepted,omitempty"`
	// Desired is where the current desired content first appeared.
	Desired *SourceMemory    `json:"desired,omitempty"`
	Applied *planner.Applied `json:"applied,omitempty"`
	// Plan is the active plan (adopted after a restart only when
	// recomputing it gives the same id) or the last one that finished.
	Plan    *PlanStatus `json:"plan,omitempty"`
	Failed  *failure    `json:"failed,omitempty"`
	History []Run       `json:"history,omitempty"`
	// Journal holds the attempts the status file has not published yet;
	// Published the newest ones it has.
	Journal    []Entry     `json:"journal,omitempty"`
	Published  []Entry     `json:"published,omitempty"`
	Workloads  *Workloads  `json:"workloads,omitempty"`
	Conditions []Condition `json:"conditions,omitempty"`
	// Peers is when this agent first saw each earlier-ring cluster of a
	// fleet Succeeded (the soak is measured from it, never from a time a
	// peer claims).
	Peers map[string]PeerSeen `json:"peers,omitempty"`
	// MigratedFrom names the status file the memory was first built from.
	MigratedFrom string `json:"migratedFrom,omitempty"`
}

// SourceMemory is the revision at which the current desired content first
// appeared, with what identifies that content.
type SourceMemory struct {
	Revision string `json:"revision,omitempty"`
	Digest   string `json:"digest,omitempty"`
	Key      string `json:"key,omitempty"`
}

// PeerSeen is a fleet peer this agent saw Succeeded, with the verified
// commit of its status branch it first saw so.
type PeerSeen struct {
	Version string    `json:"version"`
	Digest  string    `json:"digest"`
	Since   Timestamp `json:"since"`
}

// ParseMemory reads the memory document strictly (JSON: the agent
// writes it on every change, and it is read by no person).
func ParseMemory(data []byte) (Memory, error) {
	var m Memory
	if len(data) > 1<<20 {
		return m, fmt.Errorf("%d bytes, over 1 MiB", len(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Memory{}, err
	}
	if m.APIVersion != StatusAPIVersion || m.Kind != MemoryKind {
		return Memory{}, fmt.Errorf("not a %s %s", StatusAPIVersion, MemoryKind)
	}
	return m, nil
}

// memory is what the agent knows now, as the document to store.
func (a *Agent) memory() Memory {
	m := Memory{APIVersion: StatusAPIVersion, Kind: MemoryKind, Cluster: a.cfg.ClusterName, Seen: a.lastSeen,
		Accepted: a.accepted, Applied: a.applied, Plan: a.planStatus(), Failed: a.plans.failed, History: a.plans.history,
		Journal: a.journal.pending, Published: a.journal.published, Workloads: a.workloads, Conditions: a.conditions,
		Peers: a.peersSeen, MigratedFrom: a.migratedFrom}
	if a.src.rev != "" || a.src.key != "" {
		m.Desired = &SourceMemory{Revision: a.src.rev, Digest: a.src.digest, Key: a.src.key}
	}
	return m
}

// errMemoryTooLarge: the memory would not fit its ConfigMap; no step starts.
var errMemoryTooLarge = errors.New("the agent's memory would exceed its bound")

// remember writes the memory to the cluster when it changed. On a conflict
// (another writer) it reads theirs, keeps their journal entries beside its
// own and tries again. A step starts only after its intent was remembered.
func (a *Agent) remember(ctx context.Context) error {
	if a.cfg.Memory == nil {
		return nil
	}
	for attempt := 0; ; attempt++ {
		data, err := json.Marshal(a.memory())
		if err != nil {
			return err
		}
		if bytes.Equal(data, a.saved) {
			return nil
		}
		if len(data) > maxMemorySize {
			return fmt.Errorf("%w (%d bytes, at most %d): %d journal entries wait for a status push", errMemoryTooLarge, len(data), maxMemorySize, len(a.journal.pending))
		}
		if err := a.fence(ctx); err != nil {
			return err
		}
		err = a.cfg.Memory.Save(ctx, data)
		if err == nil {
			a.saved = data
			return nil
		}
		if attempt == 2 {
			return fmt.Errorf("record the agent's memory: %w", err)
		}
		theirs, lerr := a.cfg.Memory.Load(ctx)
		if lerr != nil {
			return fmt.Errorf("record the agent's memory: %w", err)
		}
		if m, perr := ParseMemory(theirs); perr == nil {
			a.journal.merge(m.Journal)
		}
	}
}

// recall reads the memory once after start, before anything is read from
// Git: the anchors must be in force for the first read. Without a memory
// in the cluster (the first start of this version) it is migrated from the
// status file (see migrate). Attempts still Running were cut short by the
// process's end: they become Interrupted.
func (a *Agent) recall(ctx context.Context) error {
	if a.recalled {
		return nil
	}
	if a.cfg.Memory == nil {
		a.recalled = true
		return nil
	}
	data, err := a.cfg.Memory.Load(ctx)
	if err != nil {
		return fmt.Errorf("read the agent's memory: %w", err)
	}
	var m Memory
	if data == nil {
		m = a.migrate(ctx)
	} else if m, err = ParseMemory(data); err != nil {
		return &memoryError{err: err}
	}
	a.restore(m)
	a.recalled = true
	if err := a.remember(ctx); err != nil {
		a.log.memoryFailed(err) // written again after the next change
	}
	return nil
}

// restore takes up what the memory holds.
func (a *Agent) restore(m Memory) {
	a.mem = &m
	a.lastSeen = m.Seen
	a.accepted = maps.Clone(m.Accepted)
	for path, commit := range m.Accepted {
		a.repo.Accepted(path, commit)
	}
	a.applied = m.Applied
	a.plans.history = m.History[:min(len(m.History), maxHistory)]
	a.plans.failed = m.Failed
	if m.Plan != nil && planDone(m.Plan) {
		a.plans.finished = m.Plan // keeps a restart in a steady state commit-free
	}
	a.journal = journal{pending: m.Journal, published: m.Published}
	a.journal.interrupt(NewTimestamp(a.cfg.Clock()))
	a.workloads = m.Workloads
	a.conditions = m.Conditions
	a.peersSeen = m.Peers
	a.migratedFrom = m.MigratedFrom
}

// migrate builds the first memory from the status file the previous
// version of kvgitops kept its memory in. Trust on first use, bounded: the
// history, journal and conditions are display only; the plan is adopted
// only when recomputing it gives the same id; drift correction writes only
// values RestoreCR accepts; a stale signed-content anchor is no weaker than
// none. From then on the status file is never read again.
func (a *Agent) migrate(ctx context.Context) Memory {
	m := Memory{}
	data, err := a.repo.ReadStatus(ctx, a.cfg.StatusPath)
	if err != nil {
		return m
	}
	prev, err := ParseStatus(data)
	if err != nil {
		a.log.previousStatusIgnored(err)
		return m
	}
	m.MigratedFrom = a.cfg.StatusPath
	m.History, m.Published, m.Conditions, m.Workloads = prev.History, prev.Journal, prev.Conditions, prev.Workloads
	m.Applied, m.Plan = prev.Applied, prev.Plan
	if d := prev.Desired; d != nil {
		m.Desired = &SourceMemory{Revision: prev.DesiredRevision, Digest: d.Digest}
		if d.SetBy != "" {
			m.Accepted = map[string]string{a.cfg.DesiredPath: d.SetBy}
		}
		if prev.Phase == PhaseFailed && prev.Plan != nil {
			m.Failed = &failure{Key: failureKey(d.Digest, prev.Plan.ID), Reason: fault.Reason(prev.Reason), Message: prev.Message}
		}
	}
	a.log.memoryMigrated(a.cfg.StatusPath)
	return m
}

// memoryError: the memory in the cluster cannot be read; nothing is done
// until it can (or an administrator deletes it to start over).
type memoryError struct{ err error }

func (e *memoryError) Error() string {
	return "the agent's memory in the cluster is unreadable (delete its ConfigMap to start over; the history and the anchors are lost): " + e.err.Error()
}
func (e *memoryError) Unwrap() error { return e.err }

// intend records the intent of an attempt durably. Unlike an outcome, an
// intent that cannot be remembered is dropped: the attempt never starts, so
// it must not appear anywhere.
func (a *Agent) intend(ctx context.Context, e Entry) error {
	if a.journal.full() {
		return &journalFull{n: len(a.journal.pending)}
	}
	a.journal.record(e)
	if err := a.remember(ctx); err != nil {
		a.journal.forget(e.ID)
		return err
	}
	return nil
}

// journalFull: too many attempts wait for a status push; no step starts.
type journalFull struct{ n int }

func (e *journalFull) Error() string {
	return fmt.Sprintf("%d attempts recorded in the agent's memory are not yet published in the status file (at most %d wait; is the status push failing?)", e.n, maxPending)
}
