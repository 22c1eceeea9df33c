package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// Entry is one attempt at one step: its intent is recorded durably before
// the cluster is touched, its outcome after, and it stays in the agent's
// memory in the cluster until a status commit that holds it was pushed (the
// transactional outbox of docs/reliability.md, "nothing lost").
type Entry struct {
	ID         string     `yaml:"id"`
	PlanID     string     `yaml:"planID"`
	Step       int        `yaml:"step"`
	Of         int        `yaml:"of"`
	Type       string     `yaml:"type"`
	From       string     `yaml:"from,omitempty"`
	To         string     `yaml:"to,omitempty"`
	State      StepState  `yaml:"state"` // Running, Succeeded, Failed, Retrying, Interrupted
	StartedAt  Timestamp  `yaml:"startedAt"`
	FinishedAt *Timestamp `yaml:"finishedAt,omitempty"`
	Message    string     `yaml:"message,omitempty"`
	// By is the replica that made the attempt (its leader identity): two
	// writers show as two names.
	By string `yaml:"by,omitempty"`
}

// Entry states beyond the step states.
const (
	EntryRetrying    StepState = "Retrying"
	EntryInterrupted StepState = "Interrupted"
)

// Journal bounds. The status file shows maxJournal entries: every entry not
// yet published first (the oldest of them when there are more), then the
// newest published ones. At most maxPending entries wait for publication; at
// that many no step starts (the memory must stay far below a ConfigMap's
// 1 MiB), and each push publishes the next maxJournal of them.
const (
	maxJournal = 50
	maxPending = 500
)

// journal is every attempt the status file has not published yet (pending,
// oldest first) and the newest published ones (newest first): the part of
// the agent's memory that Git has not got yet.
type journal struct {
	pending   []Entry
	published []Entry
}

func entryID(planID string, step int, at time.Time, by string) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s|%d|%d|%s", planID, step, at.UnixNano(), by))
	return hex.EncodeToString(sum[:8])
}

func sameID(id string) func(Entry) bool { return func(e Entry) bool { return e.ID == id } }

// record adds or updates an entry; a published entry that changes is
// pending again.
func (j *journal) record(e Entry) {
	j.published = slices.DeleteFunc(j.published, sameID(e.ID))
	if i := slices.IndexFunc(j.pending, sameID(e.ID)); i >= 0 {
		j.pending[i] = e
		return
	}
	j.pending = append(j.pending, e)
}

// forget drops an entry whose intent never became durable: the attempt
// never started, so it must not appear anywhere.
func (j *journal) forget(id string) { j.pending = slices.DeleteFunc(j.pending, sameID(id)) }

// full reports whether no further attempt may be recorded before the
// pending ones are published.
func (j *journal) full() bool { return len(j.pending) >= maxPending }

// interrupt marks the attempts still Running after a restart: the process
// died between intent and outcome; the cluster is observed again.
func (j *journal) interrupt(at Timestamp) {
	for i := range j.pending {
		if e := &j.pending[i]; e.State == StepRunning {
			e.State, e.FinishedAt = EntryInterrupted, &at
			e.Message = "the agent stopped during this step; the cluster was observed again after the restart"
		}
	}
}

// view is the status file's journal, newest first: the oldest pending
// entries first in line for publication, then the newest published ones.
func (j *journal) view() []Entry {
	out := slices.Clone(j.pending[:min(len(j.pending), maxJournal)])
	for _, e := range j.published {
		if len(out) == maxJournal {
			break
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b Entry) int { return b.StartedAt.Compare(a.StartedAt.Time) })
	return out
}

// drain moves the entries a pushed status holds with their outcome from
// pending to published; it reports whether anything moved.
func (j *journal) drain(pushed []Entry) bool {
	moved := false
	j.pending = slices.DeleteFunc(j.pending, func(p Entry) bool {
		if p.State == StepRunning || !slices.ContainsFunc(pushed, func(s Entry) bool { return s.ID == p.ID && s.State == p.State }) {
			return false
		}
		j.published = append([]Entry{p}, j.published...)
		moved = true
		return true
	})
	slices.SortStableFunc(j.published, func(a, b Entry) int { return b.StartedAt.Compare(a.StartedAt.Time) })
	j.published = j.published[:min(len(j.published), maxJournal)]
	return moved
}

// merge takes the pending entries another writer recorded that this one
// does not know (a conflict on the memory: both are kept, ours win).
func (j *journal) merge(theirs []Entry) {
	for _, e := range theirs {
		if !slices.ContainsFunc(j.pending, sameID(e.ID)) && !slices.ContainsFunc(j.published, sameID(e.ID)) {
			j.pending = append(j.pending, e)
		}
	}
}
