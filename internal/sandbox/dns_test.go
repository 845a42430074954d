package sandbox

import (
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func query(t testing.TB, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 42, RecursionDesired: true})
	b.StartQuestions()
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func parseReply(t testing.TB, reply []byte) (dnsmessage.Header, []dnsmessage.Resource) {
	t.Helper()
	var m dnsmessage.Message
	if err := m.Unpack(reply); err != nil {
		t.Fatalf("unpacking the reply: %v", err)
	}
	return m.Header, m.Answers
}

func TestDNSAnswers(t *testing.T) {
	table := newNameTable()
	tests := []struct {
		name    string
		typ     dnsmessage.Type
		rcode   dnsmessage.RCode
		answers int
	}{
		{"api.openai.com.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, 1},
		{"API.OpenAI.com.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, 1},
		{"api.openai.com.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, 0},
		{"api.openai.com.", dnsmessage.TypeMX, dnsmessage.RCodeSuccess, 0},
		{"localhost.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, 1},
		{"1.2.3.4.", dnsmessage.TypeA, dnsmessage.RCodeNameError, 0},
		{"bad_-.name-.", dnsmessage.TypeA, dnsmessage.RCodeNameError, 0},
	}
	for _, tt := range tests {
		h, answers := parseReply(t, table.answer(query(t, tt.name, tt.typ)))
		if h.ID != 42 || !h.Response || h.RCode != tt.rcode || len(answers) != tt.answers {
			t.Errorf("%s %v: rcode %v, %d answers; want %v, %d", tt.name, tt.typ, h.RCode, len(answers), tt.rcode, tt.answers)
		}
	}

	// One name, one address, stable; and the address leads back to it.
	_, a1 := parseReply(t, table.answer(query(t, "api.openai.com.", dnsmessage.TypeA)))
	_, a2 := parseReply(t, table.answer(query(t, "API.OPENAI.COM.", dnsmessage.TypeA)))
	_, b := parseReply(t, table.answer(query(t, "example.com.", dnsmessage.TypeA)))
	addrA := netip.AddrFrom4(a1[0].Body.(*dnsmessage.AResource).A)
	if addrA != netip.AddrFrom4(a2[0].Body.(*dnsmessage.AResource).A) {
		t.Error("the same name got two addresses")
	}
	addrB := netip.AddrFrom4(b[0].Body.(*dnsmessage.AResource).A)
	if addrA == addrB {
		t.Error("two names share an address")
	}
	for addr, want := range map[netip.Addr]string{addrA: "api.openai.com", addrB: "example.com"} {
		if !addr.IsLoopback() || addr.Compare(poolFirst) < 0 {
			t.Errorf("address %v is outside the pool", addr)
		}
		if got, ok := table.nameFor(addr); !ok || got != want {
			t.Errorf("nameFor(%v) = %q, %v; want %q", addr, got, ok, want)
		}
	}
	if _, ok := table.nameFor(netip.MustParseAddr("127.0.0.1")); ok {
		t.Error("127.0.0.1 maps to a name")
	}
	_, local := parseReply(t, table.answer(query(t, "localhost.", dnsmessage.TypeA)))
	if got := netip.AddrFrom4(local[0].Body.(*dnsmessage.AResource).A); got != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("localhost answered %v", got)
	}
}

func TestDNSIgnoresNonQueries(t *testing.T) {
	table := newNameTable()
	for _, packet := range [][]byte{nil, {1, 2, 3}, make([]byte, 12)} {
		if reply := table.answer(packet); reply != nil {
			t.Errorf("answered %x with %x", packet, reply)
		}
	}
	// A response is never answered, so two stubs cannot loop.
	q := query(t, "example.com.", dnsmessage.TypeA)
	q[2] |= 0x80
	if reply := table.answer(q); reply != nil {
		t.Error("answered a response")
	}
}

func TestNameTableExhaustion(t *testing.T) {
	table := newNameTable()
	table.next = poolLast
	if _, err := table.addrFor("last.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := table.addrFor("one-too-many.example"); err == nil {
		t.Error("the pool gave out an address past its end")
	}
	h, _ := parseReply(t, table.answer(query(t, "another.example.", dnsmessage.TypeA)))
	if h.RCode != dnsmessage.RCodeServerFailure {
		t.Errorf("rcode %v when the pool is exhausted", h.RCode)
	}
}

func FuzzDNSAnswer(f *testing.F) {
	f.Add(query(f, "api.openai.com.", dnsmessage.TypeA))
	f.Add(query(f, "x.", dnsmessage.TypeAAAA))
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c})
	table := newNameTable()
	f.Fuzz(func(t *testing.T, packet []byte) {
		reply := table.answer(packet)
		if reply == nil {
			return
		}
		// Whatever came in, what goes out is a well-formed response whose
		// answers, if any, are loopback addresses from the pool.
		var m dnsmessage.Message
		if err := m.Unpack(reply); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if !m.Header.Response {
			t.Fatal("reply is not a response")
		}
		for _, a := range m.Answers {
			ar, ok := a.Body.(*dnsmessage.AResource)
			if !ok {
				t.Fatalf("answer of type %T", a.Body)
			}
			if addr := netip.AddrFrom4(ar.A); !addr.IsLoopback() {
				t.Fatalf("answered %v", addr)
			}
		}
	})
}
