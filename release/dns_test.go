package release_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// fakeDNS is a DNS server on loopback that answers A queries with what
// answer says for a name and its query count, and counts every query.
type fakeDNS struct {
	mu      sync.Mutex
	queries map[string]int
	answer  func(name string, n int) (netip.Addr, bool)
	conn    net.PacketConn
}

func newFakeDNS(t *testing.T, answer func(name string, n int) (netip.Addr, bool)) *fakeDNS {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDNS{queries: map[string]int{}, answer: answer, conn: c}
	t.Cleanup(func() { _ = c.Close() })
	go d.serve()
	return d
}

func (d *fakeDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		name := strings.TrimSuffix(q.Name.String(), ".")
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
		_ = b.StartQuestions()
		_ = b.Question(q)
		_ = b.StartAnswers()
		if q.Type == dnsmessage.TypeA {
			d.mu.Lock()
			d.queries[name]++
			count := d.queries[name]
			d.mu.Unlock()
			if a, ok := d.answer(name, count); ok {
				_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0}, dnsmessage.AResource{A: a.As4()})
			}
		}
		out, err := b.Finish()
		if err == nil {
			_, _ = d.conn.WriteTo(out, from)
		}
	}
}

// resolver asks only this server.
func (d *fakeDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "udp", d.conn.LocalAddr().String())
	}}
}

func (d *fakeDNS) count(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[name]
}
