package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"

	"time"

	"gopkg.in/yaml.v3"
)

// JournalStore keeps the journal durable in the cluster (a ConfigMap the
// agent owns, written with resourceVersion preconditions).
type JournalStore interface {
	Load(ctx context.Context) ([]byte, error)
	Save(ctx context.Context, data []byte) error
}

// Entry is one attempt at one step: its intent is recorded durably before
// the cluster is touched, its outcome after, and it stays in the cluster
// until a status commit that holds it was pushed (the transactional outbox
// of docs/reliability.md, "nothing lost").
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

// maxJournal bounds the journal kept in the status file (Git keeps every
// earlier version of it).
const maxJournal = 50

// journal is the agent's view: entries not yet drained from the store, and
// the recent ones shown in the status file, newest first.
type journal struct {
	store   JournalStore
	pending []Entry // in the store: not yet pushed in a status commit
	shown   []Entry // the status file's journal, newest first
	dirty   bool    // pending changed since the store last accepted it
	ready   bool    // what the store held after a restart was read
}

func entryID(planID string, step int, at time.Time, by string) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s|%d|%d|%s", planID, step, at.UnixNano(), by))
	return hex.EncodeToString(sum[:8])
}

// recover reads what the store holds after a restart: an attempt still
// Running was cut short (the process died between intent and outcome); it
// becomes Interrupted and the cluster is observed again.
func (j *journal) recover(ctx context.Context, at Timestamp) error {
	if j.store == nil {
		j.ready = true
		return nil
	}
	data, err := j.store.Load(ctx)
	if err != nil {
		return err
	}
	var stored []Entry
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&stored); err != nil && err != io.EOF {
		return fmt.Errorf("the journal in the cluster is unreadable: %w", err)
	}
	for i := range stored {
		if stored[i].State == StepRunning {
			stored[i].State, stored[i].FinishedAt = EntryInterrupted, &at
			stored[i].Message = "the agent stopped during this step; the cluster was observed again after the restart"
		}
	}
	j.pending = stored
	for _, e := range stored {
		j.show(e)
	}
	j.dirty = len(stored) > 0
	if err := j.flush(ctx); err != nil {
		return err
	}
	j.ready = true
	return nil
}

// record adds or updates an entry, shows it, and writes the store: the
// caller acts only once record returned nil for an intent.
func (j *journal) record(ctx context.Context, e Entry) error {
	i := slices.IndexFunc(j.pending, func(p Entry) bool { return p.ID == e.ID })
	if i < 0 {
		j.pending = append(j.pending, e)
	} else {
		j.pending[i] = e
	}
	j.show(e)
	j.dirty = true
	return j.flush(ctx)
}

// intend records the intent of an attempt. Unlike an outcome, an intent
// that cannot be made durable is dropped: the attempt never starts, so it
// must not appear anywhere.
func (j *journal) intend(ctx context.Context, e Entry) error {
	err := j.record(ctx, e)
	if err != nil {
		drop := func(x Entry) bool { return x.ID == e.ID }
		j.pending = slices.DeleteFunc(j.pending, drop)
		j.shown = slices.DeleteFunc(j.shown, drop)
	}
	return err
}

// show puts e in the status file's journal, newest first.
func (j *journal) show(e Entry) {
	if i := slices.IndexFunc(j.shown, func(s Entry) bool { return s.ID == e.ID }); i >= 0 {
		j.shown[i] = e
		return
	}
	j.shown = append([]Entry{e}, j.shown...)
	slices.SortStableFunc(j.shown, func(a, b Entry) int { return b.StartedAt.Compare(a.StartedAt.Time) })
	if len(j.shown) > maxJournal {
		j.shown = j.shown[:maxJournal]
	}
}

// adopt takes the journal of the status file pushed before a restart.
func (j *journal) adopt(prev []Entry) {
	for _, e := range slices.Backward(prev) {
		if !slices.ContainsFunc(j.shown, func(s Entry) bool { return s.ID == e.ID }) {
			j.show(e)
		}
	}
}

// flush writes the pending entries when they changed. On a conflict the
// store is read again and merged by id (ours win), then written again.
func (j *journal) flush(ctx context.Context) error {
	if j.store == nil || !j.dirty {
		return nil
	}
	for attempt := 0; ; attempt++ {
		data, err := yaml.Marshal(j.pending)
		if err != nil {
			return err
		}
		err = j.store.Save(ctx, data)
		if err == nil {
			j.dirty = false
			return nil
		}
		if attempt == 2 {
			return fmt.Errorf("record the journal: %w", err)
		}
		theirs, lerr := j.store.Load(ctx)
		if lerr != nil {
			return fmt.Errorf("record the journal: %w", err)
		}
		var stored []Entry
		if yaml.Unmarshal(theirs, &stored) == nil {
			for _, s := range stored {
				if !slices.ContainsFunc(j.pending, func(p Entry) bool { return p.ID == s.ID }) {
					j.pending = append(j.pending, s)
				}
			}
		}
	}
}

// drain removes from the store the entries with an outcome that the status
// just pushed holds.
func (j *journal) drain(ctx context.Context, pushed []Entry) error {
	kept := j.pending[:0:0]
	for _, p := range j.pending {
		if p.State != StepRunning && slices.ContainsFunc(pushed, func(s Entry) bool { return s.ID == p.ID && s.State == p.State }) {
			continue
		}
		kept = append(kept, p)
	}
	if len(kept) == len(j.pending) {
		return nil
	}
	j.pending, j.dirty = kept, true
	return j.flush(ctx)
}
