package sandbox

import (
	"errors"
	"net/netip"
	"strings"
	"sync"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/cordon-dev/cordon/internal/hostname"
)

// names maps host names to the loopback addresses the DNS stub hands out
// for them, and back. Every name gets its own address, so a connection's
// local address says which name the client looked up. Addresses come from
// 127.16.0.0 up, leaving 127.0.0.0/12 to the sandbox's own use.
type nameTable struct {
	mu     sync.Mutex
	byName map[string]netip.Addr
	byAddr map[netip.Addr]string
	next   netip.Addr
}

var (
	poolFirst = netip.MustParseAddr("127.16.0.1")
	poolLast  = netip.MustParseAddr("127.255.255.254")
)

var errPoolExhausted = errors.New("no loopback addresses left for names")

func newNameTable() *nameTable {
	return &nameTable{byName: map[string]netip.Addr{}, byAddr: map[netip.Addr]string{}, next: poolFirst}
}

// addrFor returns the address for a normalised name, assigning one the
// first time.
func (t *nameTable) addrFor(name string) (netip.Addr, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a, ok := t.byName[name]; ok {
		return a, nil
	}
	if t.next.Compare(poolLast) > 0 {
		return netip.Addr{}, errPoolExhausted
	}
	a := t.next
	t.next = t.next.Next()
	t.byName[name], t.byAddr[a] = a, name
	return a, nil
}

// nameFor returns the name an address was handed out for.
func (t *nameTable) nameFor(a netip.Addr) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	name, ok := t.byAddr[a.Unmap()]
	return name, ok
}

// dnsTTL is how long clients may cache an answer. A name keeps its
// address for the sandbox's life, so it can be long.
const dnsTTL = 300

// answer builds the stub's reply to a DNS query: an A record from the
// table for any valid name, no records for other types (so clients fall
// back from AAAA to A), NXDOMAIN for names that are not host names. It
// returns nil for a packet that is not a query worth answering.
func (t *nameTable) answer(query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}

	reply := dnsmessage.Header{
		ID: h.ID, Response: true, Authoritative: true,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true,
	}
	if h.OpCode != 0 {
		reply.RCode = dnsmessage.RCodeNotImplemented
		return build(reply, q, nil)
	}
	if q.Class != dnsmessage.ClassINET {
		reply.RCode = dnsmessage.RCodeRefused
		return build(reply, q, nil)
	}
	name, err := hostname.Normalize(strings.TrimSuffix(q.Name.String(), "."))
	if err != nil || hostname.IsIP(name) {
		reply.RCode = dnsmessage.RCodeNameError
		return build(reply, q, nil)
	}
	if q.Type != dnsmessage.TypeA {
		return build(reply, q, nil)
	}
	addr, err := t.addrFor(name)
	if name == "localhost" {
		addr, err = netip.MustParseAddr("127.0.0.1"), nil
	}
	if err != nil {
		reply.RCode = dnsmessage.RCodeServerFailure
		return build(reply, q, nil)
	}
	return build(reply, q, &dnsmessage.AResource{A: addr.As4()})
}

func build(h dnsmessage.Header, q dnsmessage.Question, a *dnsmessage.AResource) []byte {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil {
		return nil
	}
	if a != nil {
		if b.StartAnswers() != nil {
			return nil
		}
		rh := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: dnsTTL}
		if b.AResource(rh, *a) != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}
