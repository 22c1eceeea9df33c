package gitsource

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/storage/memory"
)

// limits bound what one pack may put in memory, whatever the repository
// holds: a pack is read object by object, never whole.
type limits struct {
	// object caps a commit, tree or delta; a bigger one fails the read.
	object int64
	// blob caps the blobs that are kept. A bigger blob is hashed as it
	// streams past and only its hash and size are remembered: a junk file
	// beside the desired file costs CPU, never memory.
	blob int64
	// total caps the inflated bytes kept from one pack. Past it, blobs are
	// skipped as if over the blob cap, and a commit or tree fails the read.
	total int64
}

// unpacked is what a pack brought that was not kept.
type unpacked struct {
	skipped map[plumbing.Hash]int64 // blobs over the cap: size by hash
	objects int
	bytes   int64
}

var errPackOverLimit = errors.New("pack over the inflated-size limit")

// objectStore is what reading a pack needs of a store.
type objectStore interface {
	SetEncodedObject(plumbing.EncodedObject) (plumbing.Hash, error)
	EncodedObject(plumbing.ObjectType, plumbing.Hash) (plumbing.EncodedObject, error)
}

// unpackInto reads a pack into a scratch store and copies it into st only
// when the whole pack was good: a pack cut short or corrupt leaves st as it
// was (a half-read commit and tree must not pass for a complete read).
func unpackInto(r io.Reader, st *memory.Storage, lim limits) (unpacked, error) {
	scratch := &layered{top: memory.NewStorage(), base: st}
	u, err := unpack(r, scratch, lim)
	if err != nil {
		return u, err
	}
	iter, err := scratch.top.IterEncodedObjects(plumbing.AnyObject)
	if err != nil {
		return u, err
	}
	return u, iter.ForEach(func(o plumbing.EncodedObject) error {
		_, err := st.SetEncodedObject(o)
		return err
	})
}

// layered writes to top and reads from top, then base: thin packs find
// their delta bases in the store the read adds to.
type layered struct {
	top  *memory.Storage
	base objectStore
}

func (l *layered) SetEncodedObject(o plumbing.EncodedObject) (plumbing.Hash, error) {
	return l.top.SetEncodedObject(o)
}

func (l *layered) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	if o, err := l.top.EncodedObject(t, h); err == nil {
		return o, nil
	}
	return l.base.EncodedObject(t, h)
}

// unpack reads a pack stream into st within lim, verifying its trailing
// checksum. Deltas are resolved against objects already read or already in
// st (a thin pack); a delta whose base was skipped is skipped too.
func unpack(r io.Reader, st objectStore, lim limits) (unpacked, error) {
	u := &unpacker{st: st, lim: lim, out: unpacked{skipped: map[plumbing.Hash]int64{}},
		at: map[int64]plumbing.Hash{}, unresolved: map[int64]bool{}}
	sum := newTrailer()
	sc := packfile.NewScanner(io.TeeReader(r, sum))
	_, count, err := sc.Header()
	if err != nil {
		return u.out, fmt.Errorf("pack header: %w", err)
	}
	for i := uint32(0); i < count; i++ {
		h, err := sc.NextObjectHeader()
		if err == nil {
			err = u.object(sc, h)
		}
		if err != nil {
			return u.out, fmt.Errorf("pack object %d: %w", i, err)
		}
	}
	if _, err := sc.Checksum(); err != nil {
		return u.out, fmt.Errorf("pack trailer: %w", err)
	}
	if !sum.ok() {
		return u.out, errors.New("pack checksum mismatch: the pack is corrupt")
	}
	return u.out, nil
}

// unpacker is one pack being read.
type unpacker struct {
	st         objectStore
	lim        limits
	out        unpacked
	at         map[int64]plumbing.Hash // offset -> hash, for offset deltas
	unresolved map[int64]bool          // offsets of skipped deltas
}

func (u *unpacker) object(sc *packfile.Scanner, h *packfile.ObjectHeader) error {
	switch h.Type {
	case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
		return u.whole(sc, h)
	case plumbing.OFSDeltaObject, plumbing.REFDeltaObject:
		return u.delta(sc, h)
	case plumbing.InvalidObject, plumbing.AnyObject:
	}
	return fmt.Errorf("unknown type %v", h.Type)
}

// whole reads an object stored whole; a blob over the caps is hashed as it
// streams past and dropped.
func (u *unpacker) whole(sc *packfile.Scanner, h *packfile.ObjectHeader) error {
	if h.Type == plumbing.BlobObject && (h.Length > u.lim.blob || u.out.bytes+h.Length > u.lim.total) {
		hs := plumbing.NewHasher(h.Type, h.Length)
		if _, _, err := sc.NextObject(&hs); err != nil {
			return err
		}
		id := hs.Sum()
		u.out.skipped[id] = h.Length
		u.at[h.Offset] = id
		return nil
	}
	if h.Length > u.lim.object && h.Type != plumbing.BlobObject {
		return fmt.Errorf("%w: a %s of %d bytes", errPackOverLimit, h.Type, h.Length)
	}
	o := &plumbing.MemoryObject{}
	o.SetType(h.Type)
	o.SetSize(h.Length)
	if _, _, err := sc.NextObject(o); err != nil {
		return err
	}
	return u.keep(h.Offset, o)
}

// delta resolves a delta against its base, unless the base was skipped or
// the result is over the caps.
func (u *unpacker) delta(sc *packfile.Scanner, h *packfile.ObjectHeader) error {
	if h.Length > u.lim.object {
		return fmt.Errorf("%w: a delta of %d bytes", errPackOverLimit, h.Length)
	}
	var delta bytes.Buffer
	if _, _, err := sc.NextObject(&delta); err != nil {
		return err
	}
	base, ok := u.base(h)
	if !ok {
		u.unresolved[h.Offset] = true
		return nil
	}
	b, err := u.st.EncodedObject(plumbing.AnyObject, base)
	if err != nil {
		return fmt.Errorf("delta base %s: %w", base, err)
	}
	size, err := deltaTargetSize(delta.Bytes())
	switch {
	case err != nil:
		return err
	case size > u.lim.blob && b.Type() == plumbing.BlobObject:
		u.unresolved[h.Offset] = true
		return nil
	case size > u.lim.object && b.Type() != plumbing.BlobObject:
		return fmt.Errorf("%w: a %s of %d bytes", errPackOverLimit, b.Type(), size)
	}
	o := &plumbing.MemoryObject{}
	o.SetType(b.Type())
	if err := packfile.ApplyDelta(o, b, delta.Bytes()); err != nil {
		return err
	}
	return u.keep(h.Offset, o)
}

// base is the object a delta applies to; false when it was skipped.
func (u *unpacker) base(h *packfile.ObjectHeader) (plumbing.Hash, bool) {
	base := h.Reference
	if h.Type == plumbing.OFSDeltaObject {
		if u.unresolved[h.OffsetReference] {
			return plumbing.ZeroHash, false
		}
		base = u.at[h.OffsetReference]
	}
	_, skipped := u.out.skipped[base]
	return base, !skipped
}

// keep stores o within the pack's total cap (a blob over it is dropped).
func (u *unpacker) keep(offset int64, o *plumbing.MemoryObject) error {
	if u.out.bytes+o.Size() > u.lim.total {
		if o.Type() != plumbing.BlobObject {
			return fmt.Errorf("%w: more than %d bytes", errPackOverLimit, u.lim.total)
		}
		u.out.skipped[o.Hash()] = o.Size()
		u.at[offset] = o.Hash()
		return nil
	}
	u.out.bytes += o.Size()
	u.out.objects++
	id, err := u.st.SetEncodedObject(o)
	if err != nil {
		return err
	}
	u.at[offset] = id
	return nil
}

// deltaTargetSize reads the size of the object a delta produces (its second
// header varint), before anything is allocated for it.
func deltaTargetSize(d []byte) (int64, error) {
	var sizes [2]int64
	for k := range sizes {
		var v int64
		for shift := uint(0); ; shift += 7 {
			if len(d) == 0 || shift > 56 {
				return 0, errors.New("malformed delta header")
			}
			c := d[0]
			d = d[1:]
			v |= int64(c&0x7f) << shift
			if c&0x80 == 0 {
				break
			}
		}
		sizes[k] = v
	}
	return sizes[1], nil
}

// trailer hashes every byte of a pack but its last 20, which it keeps, so
// the pack's own checksum can be compared at the end.
type trailer struct {
	h    hash.Hash
	tail []byte
}

func newTrailer() *trailer { return &trailer{h: sha1.New()} }

func (t *trailer) Write(p []byte) (int, error) {
	t.tail = append(t.tail, p...)
	if n := len(t.tail) - 20; n > 0 {
		t.h.Write(t.tail[:n])
		t.tail = append(t.tail[:0], t.tail[n:]...)
	}
	return len(p), nil
}

func (t *trailer) ok() bool { return len(t.tail) == 20 && bytes.Equal(t.h.Sum(nil), t.tail) }
