package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/planner"
)

// readRepo polls the branch and reads the desired content when it moved. A
// branch that cannot be read is said in the status when it is the
// repository's doing (rewritten, empty); Git being down leaves nowhere to
// say anything.
func (a *Agent) readRepo(ctx context.Context, p *pass) (verdict, error) {
	head, err := a.repo.Head(ctx, a.lastSeen)
	a.cfg.Metrics.gitOp("poll", err)
	switch {
	case fault.ReasonOf(err) == gitsource.ReasonHistoryRewritten:
		p.set(PhaseInvalid, gitsource.ReasonHistoryRewritten, err.Error())
		return done, nil
	case err != nil:
		return silent, err
	case head == "":
		p.set(PhaseInvalid, gitsource.ReasonDesiredFileMissing, "the branch has no commits yet; commit "+a.cfg.DesiredPath)
		return done, nil
	}
	a.lastSeen = head
	a.log = logger{a.cfg.Logger}.with("revision", gitsource.Revision(head).Short())
	if err := a.readDesired(ctx, head); err != nil {
		return silent, err
	}
	a.adoptRevision()
	p.DesiredRevision = a.src.rev
	return goOn, nil
}

// content is what the repository holds at a head: the desired file and
// the risks file beside it, or why they cannot be read (errors that stall;
// the others fail the pass).
type content struct {
	data, risks []byte
	from        Provenance
	err, rerr   error
}

// key says what the content is: its bytes, or why it cannot be read.
func (c content) key() (key, digest string) {
	if c.err == nil {
		sum := sha256.Sum256(c.data)
		digest = hex.EncodeToString(sum[:])[:16]
		key = "bytes:" + digest + ":" + c.from.Signer
	} else {
		key = "error:" + c.err.Error()
	}
	if c.rerr != nil {
		key += "|risks-error:" + c.rerr.Error()
	} else if c.risks != nil {
		sum := sha256.Sum256(c.risks)
		key += "|risks:" + hex.EncodeToString(sum[:])
	}
	return key, digest
}

// readDesired reads and parses the desired file when the head moved. What
// counts is the desired content, not the head: the revision advances only
// when the file's bytes (or, for a file that cannot be read, the reason
// and message) change, so the agent's own status commits change nothing
// and a steady state, healthy or broken, makes no commits. A missing file
// has no revision at all.
func (a *Agent) readDesired(ctx context.Context, head string) error {
	if head == a.src.readRev {
		return nil
	}
	c, err := a.readContent(ctx, head)
	if err != nil {
		return err
	}
	a.src.readRev = head
	key, digest := c.key()
	if key == a.src.key {
		return nil
	}
	a.src.key = key
	a.src.rev, a.src.digest, a.src.from = head, digest, c.from
	if fault.ReasonOf(c.err) == gitsource.ReasonDesiredFileMissing {
		a.src.rev = ""
	}
	a.src.desired, a.src.err = nil, c.err
	if c.err == nil {
		a.src.err = c.rerr
	}
	if a.src.err == nil {
		a.src.desired, a.src.err = a.parseContent(c)
	}
	return nil
}

// readContent reads the desired and risks files at head.
func (a *Agent) readContent(ctx context.Context, head string) (content, error) {
	var c content
	c.data, c.from, c.err = a.repo.Read(ctx, head, a.cfg.DesiredPath)
	a.cfg.Metrics.gitOp("read", c.err)
	if c.err != nil && !fault.Stalls(c.err) {
		return c, c.err
	}
	a.accept(a.cfg.DesiredPath, c.from)
	c.risks, c.rerr = a.readRisks(ctx, head)
	if c.rerr != nil && !fault.Stalls(c.rerr) {
		return c, c.rerr
	}
	return c, nil
}

// parseContent parses the desired file and the repository's risks.
func (a *Agent) parseContent(c content) (*planner.Desired, error) {
	d, err := a.parseDesired(c.data)
	if err != nil {
		return nil, err
	}
	if c.risks != nil {
		if d.ExtraRisks, err = planner.ParseRisks(c.risks); err != nil {
			return nil, fmt.Errorf("%s: %w", a.cfg.RisksPath, err)
		}
	}
	return &d, nil
}

// readRisks reads the repository's risks file: nil when there is none.
// When signatures are verified it must be signed as the desired file is.
func (a *Agent) readRisks(ctx context.Context, head string) ([]byte, error) {
	data, from, err := a.repo.Read(ctx, head, a.cfg.RisksPath)
	a.cfg.Metrics.gitOp("read", err)
	if fault.ReasonOf(err) == gitsource.ReasonDesiredFileMissing {
		return nil, nil
	}
	a.accept(a.cfg.RisksPath, from)
	return data, err
}

// accept remembers the signed commit that set verified content at path:
// signed content there only moves forward from it.
func (a *Agent) accept(path string, from Provenance) {
	if from.SetBy == "" || a.accepted[path] == from.SetBy {
		return
	}
	if a.accepted == nil {
		a.accepted = map[string]string{}
	}
	a.accepted[path] = from.SetBy
}

// adoptRevision keeps the remembered desired revision while the desired
// content is the one it was remembered with (after a restart, the head has
// moved past the commit that set it).
func (a *Agent) adoptRevision() {
	m := a.mem
	if m == nil || m.Desired == nil || m.Desired.Revision == "" || a.src.rev == m.Desired.Revision {
		return
	}
	d := m.Desired
	if d.Key != "" && d.Key == a.src.key || d.Key == "" && d.Digest != "" && d.Digest == a.src.digest {
		a.src.rev = d.Revision
	}
}
