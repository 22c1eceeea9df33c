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
	out := unpacked{skipped: map[plumbing.Hash]int64{}}
	sum := newTrailer()
	sc := packfile.NewScanner(io.TeeReader(r, sum))
	_, count, err := sc.Header()
	if err != nil {
		return out, fmt.Errorf("pack header: %w", err)
	}
	at := map[int64]plumbing.Hash{} // offset -> hash, for offset deltas
	unresolved := map[int64]bool{}  // offsets of skipped deltas
	keep := func(o *plumbing.MemoryObject) (plumbing.Hash, error) {
		if out.bytes+o.Size() > lim.total {
			if o.Type() == plumbing.BlobObject {
				out.skipped[o.Hash()] = o.Size()
				return o.Hash(), nil
			}
			return plumbing.ZeroHash, fmt.Errorf("%w: more than %d bytes", errPackOverLimit, lim.total)
		}
		out.bytes += o.Size()
		out.objects++
		return st.SetEncodedObject(o)
	}
	for i := uint32(0); i < count; i++ {
		h, err := sc.NextObjectHeader()
		if err != nil {
			return out, fmt.Errorf("pack object %d: %w", i, err)
		}
		switch h.Type {
		case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
			if h.Type == plumbing.BlobObject && (h.Length > lim.blob || out.bytes+h.Length > lim.total) {
				hs := plumbing.NewHasher(h.Type, h.Length)
				if _, _, err := sc.NextObject(&hs); err != nil {
					return out, fmt.Errorf("pack object %d: %w", i, err)
				}
				id := hs.Sum()
				out.skipped[id] = h.Length
				at[h.Offset] = id
				continue
			}
			if h.Length > lim.object && h.Type != plumbing.BlobObject {
				return out, fmt.Errorf("%w: a %s of %d bytes", errPackOverLimit, h.Type, h.Length)
			}
			o := &plumbing.MemoryObject{}
			o.SetType(h.Type)
			o.SetSize(h.Length)
			if _, _, err := sc.NextObject(o); err != nil {
				return out, fmt.Errorf("pack object %d: %w", i, err)
			}
			id, err := keep(o)
			if err != nil {
				return out, err
			}
			at[h.Offset] = id
		case plumbing.OFSDeltaObject, plumbing.REFDeltaObject:
			if h.Length > lim.object {
				return out, fmt.Errorf("%w: a delta of %d bytes", errPackOverLimit, h.Length)
			}
			var delta bytes.Buffer
			if _, _, err := sc.NextObject(&delta); err != nil {
				return out, fmt.Errorf("pack object %d: %w", i, err)
			}
			base := h.Reference
			if h.Type == plumbing.OFSDeltaObject {
				if unresolved[h.OffsetReference] {
					unresolved[h.Offset] = true
					continue
				}
				base = at[h.OffsetReference]
			}
			if _, skipped := out.skipped[base]; skipped {
				unresolved[h.Offset] = true
				continue
			}
			b, err := st.EncodedObject(plumbing.AnyObject, base)
			if err != nil {
				return out, fmt.Errorf("pack object %d: delta base %s: %w", i, base, err)
			}
			size, err := deltaTargetSize(delta.Bytes())
			if err != nil {
				return out, fmt.Errorf("pack object %d: %w", i, err)
			}
			if size > lim.blob && b.Type() == plumbing.BlobObject {
				unresolved[h.Offset] = true
				continue
			}
			if size > lim.object && b.Type() != plumbing.BlobObject {
				return out, fmt.Errorf("%w: a %s of %d bytes", errPackOverLimit, b.Type(), size)
			}
			o := &plumbing.MemoryObject{}
			o.SetType(b.Type())
			if err := packfile.ApplyDelta(o, b, delta.Bytes()); err != nil {
				return out, fmt.Errorf("pack object %d: %w", i, err)
			}
			id, err := keep(o)
			if err != nil {
				return out, err
			}
			at[h.Offset] = id
		default:
			return out, fmt.Errorf("pack object %d: unknown type %v", i, h.Type)
		}
	}
	if _, err := sc.Checksum(); err != nil {
		return out, fmt.Errorf("pack trailer: %w", err)
	}
	if !sum.ok() {
		return out, errors.New("pack checksum mismatch: the pack is corrupt")
	}
	return out, nil
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
