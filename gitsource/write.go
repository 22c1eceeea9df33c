package gitsource

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/kvgitops/kvgitops/redact"
)

// WriteFile commits data at path on the status branch with message and
// pushes it, with the head it built on as the only accepted old value. When
// the file already holds data it returns ErrUnchanged and makes no commit.
// A push rejected because the branch moved is retried on the new head (other
// people's commits stay), with backoff, at most PushRetries times; it never
// forces. A push refused for permissions is a terminal StatusPushForbidden.
func (s *Source) WriteFile(ctx context.Context, filePath string, data []byte, message string) (Revision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := cleanPath(filePath)
	if err != nil {
		return "", s.errorf(ReasonInvalidConfig, true, nil, "%v", err)
	}
	branch := s.cfg.StatusBranch
	backoff := 200 * time.Millisecond
	var last error
	for attempt := 0; attempt <= s.cfg.PushRetries; attempt++ {
		if attempt > 0 {
			// Jittered: writers that collided must not collide again in step
			// (a fleet pushes to one branch).
			wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
			select {
			case <-ctx.Done():
				return "", s.errorf(ReasonGitUnavailable, false, ctx.Err(), "push status")
			case <-time.After(wait):
			}
			backoff = min(backoff*2, 5*time.Second)
		}
		head, err := s.head(ctx, branch)
		if err != nil {
			return "", err
		}
		if !head.IsZero() {
			parts := strings.Split(p, "/")
			r := &reader{s: s, ctx: ctx}
			err := r.trees(head, parts[:len(parts)-1])
			r.close()
			if err != nil {
				return "", err
			}
		}
		commit, created, err := s.buildCommit(head, p, data, message)
		if errors.Is(err, ErrUnchanged) {
			return newRevision(branch, head), ErrUnchanged
		}
		if err != nil {
			return "", err
		}
		if s.pushGuard != nil {
			if err := s.pushGuard(ctx); err != nil {
				return "", s.errorf(ReasonStatusPushFailing, false, nil, "push status: %v", err)
			}
		}
		err = s.push(ctx, branch, head, commit, created)
		if err == nil {
			s.have = commit
			return newRevision(branch, commit), nil
		}
		var conflict *pushConflict
		if !errors.As(err, &conflict) {
			return "", err
		}
		last = err
	}
	return "", s.errorf(ReasonStatusPushFailing, false, last, "push status to %s: the branch kept moving over %d attempts", branch, s.cfg.PushRetries+1)
}

type pushConflict struct{ msg string }

func (e *pushConflict) Error() string { return e.msg }

// buildCommit writes the blob, the trees down to it and a commit on parent
// into the store, returning the commit and every object it created.
func (s *Source) buildCommit(parent plumbing.Hash, p string, data []byte, message string) (plumbing.Hash, []plumbing.Hash, error) {
	var created []plumbing.Hash
	put := func(o object.Object) (plumbing.Hash, error) {
		enc := s.store.NewEncodedObject()
		if err := o.Encode(enc); err != nil {
			return plumbing.ZeroHash, err
		}
		h, err := s.store.SetEncodedObject(enc)
		created = append(created, h)
		return h, err
	}
	blobObj := s.store.NewEncodedObject()
	blobObj.SetType(plumbing.BlobObject)
	w, _ := blobObj.Writer()
	_, _ = w.Write(data)
	_ = w.Close()
	blob, err := s.store.SetEncodedObject(blobObj)
	if err != nil {
		return plumbing.ZeroHash, nil, err
	}
	created = append(created, blob)
	var rootTree plumbing.Hash
	if !parent.IsZero() {
		c, err := object.GetCommit(s.store, parent)
		if err != nil {
			return plumbing.ZeroHash, nil, s.errorf(ReasonGitUnavailable, false, err, "read the branch head")
		}
		rootTree = c.TreeHash
	}
	newRoot, err := s.setPath(rootTree, strings.Split(p, "/"), blob, put)
	if err != nil {
		return plumbing.ZeroHash, nil, err
	}
	if newRoot == rootTree {
		return plumbing.ZeroHash, nil, ErrUnchanged
	}
	now := time.Now()
	sig := object.Signature{Name: s.cfg.AuthorName, Email: s.cfg.AuthorEmail, When: now}
	c := &object.Commit{Author: sig, Committer: sig, Message: message, TreeHash: newRoot}
	if !parent.IsZero() {
		c.ParentHashes = []plumbing.Hash{parent}
	}
	if s.cfg.Signer != nil {
		if c.PGPSignature, err = s.cfg.Signer.sign(c); err != nil {
			return plumbing.ZeroHash, nil, s.errorf(ReasonInvalidConfig, true, err, "sign the status commit")
		}
	}
	h, err := put(c)
	return h, created, err
}

// setPath returns the tree that is tree with blob at parts.
func (s *Source) setPath(tree plumbing.Hash, parts []string, blob plumbing.Hash, put func(object.Object) (plumbing.Hash, error)) (plumbing.Hash, error) {
	var entries []object.TreeEntry
	if !tree.IsZero() {
		t, err := object.GetTree(s.store, tree)
		if err != nil {
			return plumbing.ZeroHash, s.errorf(ReasonGitUnavailable, false, err, "read a tree")
		}
		entries = append(entries, t.Entries...)
	}
	name := parts[0]
	idx := -1
	for i, e := range entries {
		if e.Name == name {
			idx = i
		}
	}
	var entry object.TreeEntry
	if len(parts) == 1 {
		if idx >= 0 && entries[idx].Mode != filemode.Regular && entries[idx].Mode != filemode.Executable {
			return plumbing.ZeroHash, s.errorf(ReasonNotRegularFile, true, nil, "the status path %s exists and is not a regular file", name)
		}
		entry = object.TreeEntry{Name: name, Mode: filemode.Regular, Hash: blob}
	} else {
		sub := plumbing.ZeroHash
		if idx >= 0 {
			if entries[idx].Mode != filemode.Dir {
				return plumbing.ZeroHash, s.errorf(ReasonNotRegularFile, true, nil, "the status path component %s is not a directory", name)
			}
			sub = entries[idx].Hash
		}
		h, err := s.setPath(sub, parts[1:], blob, put)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entry = object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h}
	}
	if idx >= 0 {
		if entries[idx] == entry {
			return tree, nil
		}
		entries[idx] = entry
	} else {
		entries = append(entries, entry)
	}
	sort.Slice(entries, func(i, j int) bool { return gitName(entries[i]) < gitName(entries[j]) })
	return put(&object.Tree{Entries: entries})
}

// gitName is the sort key git uses: directories sort as if named "name/".
func gitName(e object.TreeEntry) string {
	if e.Mode == filemode.Dir {
		return e.Name + "/"
	}
	return e.Name
}

// push sends the created objects and moves the branch from old to new; the
// server refuses if the branch is no longer at old.
func (s *Source) push(ctx context.Context, branch string, old, new plumbing.Hash, objects []plumbing.Hash) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	auth, err := s.remote.authMethod()
	if err != nil {
		return s.credentialsError(err)
	}
	sess, err := s.remote.transport.NewReceivePackSession(s.remote.endpoint, auth)
	if err != nil {
		return s.pushError(ctx, err)
	}
	defer sess.Close()
	adv, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil && !errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return s.pushError(ctx, err)
	}
	if adv != nil && refHash(adv, branch) != old {
		return &pushConflict{msg: "the branch moved before the push"}
	}
	var pack bytes.Buffer
	if _, err := packfile.NewEncoder(&pack, s.store, false).Encode(objects, 0); err != nil {
		return s.errorf(ReasonGitUnavailable, false, err, "encode the status pack")
	}
	req := packp.NewReferenceUpdateRequest()
	if adv != nil {
		req = packp.NewReferenceUpdateRequestFromCapabilities(adv.Capabilities)
	}
	_ = req.Capabilities.Set(capability.ReportStatus)
	req.Commands = []*packp.Command{{Name: plumbing.NewBranchReferenceName(branch), Old: old, New: new}}
	req.Packfile = io.NopCloser(&pack)
	report, err := sess.ReceivePack(ctx, req)
	switch {
	case report != nil: // the server answered (go-git also returns the report's error)
		return s.reported(report)
	case err != nil:
		return s.pushError(ctx, err)
	}
	return nil
}

// pushError classifies a push the transport failed: refused for
// permissions (HTTP 403) is terminal; the rest as any Git error.
func (s *Source) pushError(ctx context.Context, err error) error {
	if errors.Is(err, transport.ErrAuthorizationFailed) {
		return s.errorf(ReasonStatusPushForbidden, true, nil, "push status to %s was refused: %s", s.remote.display, s.scrub(redact.Truncate(err.Error(), 200)))
	}
	return s.classify(ctx, err, "push to")
}

// reported reads the server's report of a push: a ref that moved under the
// push (retried on the new tip) or a refusal (a hook, branch protection:
// terminal), from the status the protocol gives each command.
func (s *Source) reported(report *packp.ReportStatus) error {
	if report.UnpackStatus != "ok" {
		return s.errorf(ReasonStatusPushFailing, false, nil, "push status to %s: the server could not unpack: %s", s.remote.display, s.scrub(redact.Truncate(report.UnpackStatus, 200)))
	}
	for _, c := range report.CommandStatuses {
		switch {
		case c.Status == "ok":
		case refMoved(c.Status):
			return &pushConflict{msg: redact.Truncate(c.Status, 200)}
		default:
			return s.errorf(ReasonStatusPushForbidden, true, nil, "push status to %s was refused: %s", s.remote.display, s.scrub(redact.Truncate(c.Status, 200)))
		}
	}
	return nil
}

// refMoved reports whether a command status says the branch moved or was
// locked by a concurrent push (git's receive-pack wording), so the push can
// be retried on the new tip.
func refMoved(status string) bool {
	for _, p := range []string{"non-fast-forward", "fetch first", "stale info", "failed to update ref", "failed to lock", "cannot lock ref"} {
		if strings.HasPrefix(status, p) {
			return true
		}
	}
	return false
}

// SetPushGuard sets a check made right before every push attempt (the
// agent's leader fence): a push it refuses is not sent.
func (s *Source) SetPushGuard(f func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushGuard = f
}
