package gitsource

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/kvgitops/kvgitops/redact"
)

// Git's pkt-line framing, with the three special packets protocol v2 adds
// ("0001" delimiter, "0002" response end) that go-git v5 does not read.

type pktKind int

const (
	pktData pktKind = iota
	pktFlush
	pktDelim
	pktEnd
)

// maxPkt is the largest pkt-line git sends (65520 with its length).
const maxPkt = 65516

type pktReader struct {
	r   *bufio.Reader
	buf []byte
}

func newPktReader(r io.Reader) *pktReader {
	return &pktReader{r: bufio.NewReaderSize(r, 16<<10), buf: make([]byte, maxPkt)}
}

// next reads one packet; the payload is valid until the next call. An
// "ERR " packet is an error carrying the server's words.
func (p *pktReader) next() (pktKind, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(p.r, hdr[:]); err != nil {
		if err == io.EOF {
			return 0, nil, io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	n, err := strconv.ParseUint(string(hdr[:]), 16, 16)
	if err != nil {
		return 0, nil, fmt.Errorf("malformed pkt-line length %q", hdr[:])
	}
	switch {
	case n == 0:
		return pktFlush, nil, nil
	case n == 1:
		return pktDelim, nil, nil
	case n == 2:
		return pktEnd, nil, nil
	case n < 4 || n-4 > maxPkt:
		return 0, nil, fmt.Errorf("malformed pkt-line length %d", n)
	}
	b := p.buf[:n-4]
	if _, err := io.ReadFull(p.r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	if len(b) > 4 && string(b[:4]) == "ERR " {
		return 0, nil, &serverError{msg: strings.TrimSpace(string(b[4:]))}
	}
	return pktData, b, nil
}

// line reads a data packet as text, without its newline; ok is false at a
// flush, delimiter or response end.
func (p *pktReader) line() (string, pktKind, error) {
	k, b, err := p.next()
	if err != nil || k != pktData {
		return "", k, err
	}
	return strings.TrimSuffix(string(b), "\n"), k, nil
}

// serverError is what the server said went wrong, on an ERR packet or on
// side-band 3.
type serverError struct{ msg string }

func (e *serverError) Error() string { return "the server said: " + redact.Truncate(e.msg, 200) }

// pktWriter builds a request.
type pktWriter struct{ b strings.Builder }

func (w *pktWriter) line(format string, args ...any) {
	s := fmt.Sprintf(format, args...) + "\n"
	fmt.Fprintf(&w.b, "%04x%s", len(s)+4, s)
}
func (w *pktWriter) delim()         { w.b.WriteString("0001") }
func (w *pktWriter) flush()         { w.b.WriteString("0000") }
func (w *pktWriter) String() string { return w.b.String() }

// bandReader reads side-band data (band 1) until the flush that ends the
// response; progress (band 2) is dropped, band 3 is the server's error.
type bandReader struct {
	p   *pktReader
	cur []byte
	eof bool
}

func (r *bandReader) Read(b []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		k, pl, err := r.p.next()
		if err != nil {
			return 0, err
		}
		if k != pktData {
			r.eof = true
			continue
		}
		if len(pl) == 0 {
			continue
		}
		switch pl[0] {
		case 1:
			r.cur = pl[1:]
		case 2:
		case 3:
			return 0, &serverError{msg: string(pl[1:])}
		default:
			return 0, fmt.Errorf("side-band %d is not one git sends", pl[0])
		}
	}
	n := copy(b, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}
