package policy

import (
	"errors"
	"net/netip"
	"testing"
)

// Every blocked range, in each form that reaches it, through CheckAddress
// with a policy that allows everything: the address checks do not depend
// on the rules that allowed the name.
func TestCheckAddressBlockedRanges(t *testing.T) {
	v := NewView(testPolicy(t, AllowAll), testProviders(t), nil)
	tests := []struct {
		addr  string
		rng   string // "" when the address is allowed
		via   string
		label string
	}{
		// IPv4.
		{"127.0.0.1", "loopback", "", ""},
		{"127.255.255.254", "loopback", "", ""},
		{"0.0.0.0", "unspecified", "", ""},
		{"0.1.2.3", "unspecified", "", ""},
		{"10.0.0.1", "private (RFC 1918)", "", ""},
		{"172.16.0.1", "private (RFC 1918)", "", ""},
		{"172.31.255.255", "private (RFC 1918)", "", ""},
		{"172.32.0.1", "", "", "just past 172.16/12"},
		{"192.168.1.1", "private (RFC 1918)", "", ""},
		{"100.64.0.1", "carrier-grade NAT (RFC 6598)", "", ""},
		{"100.127.255.255", "carrier-grade NAT (RFC 6598)", "", ""},
		{"100.128.0.1", "", "", "just past 100.64/10"},
		{"100.100.100.200", "cloud metadata", "", "Alibaba"},
		{"169.254.169.254", "cloud metadata", "", ""},
		{"169.254.1.1", "link-local", "", ""},
		{"168.63.129.16", "cloud metadata", "", "Azure WireServer"},
		{"192.0.0.170", "IETF protocol assignments", "", ""},
		{"192.0.2.1", "documentation", "", ""},
		{"198.18.0.1", "benchmarking", "", ""},
		{"224.0.0.1", "multicast", "", ""},
		{"239.255.255.250", "multicast", "", ""},
		{"255.255.255.255", "broadcast", "", ""},
		{"240.0.0.1", "reserved", "", ""},
		{"8.8.8.8", "", "", "public"},
		{"1.1.1.1", "", "", "public"},

		// IPv6.
		{"::1", "loopback", "", ""},
		{"::", "unspecified", "", ""},
		{"::127.0.0.1", "IPv4-compatible (deprecated)", "", ""},
		{"fe80::1", "link-local", "", ""},
		{"fc00::1", "unique local", "", ""},
		{"fd12:3456::1", "unique local", "", ""},
		{"fd00:ec2::254", "cloud metadata", "", "AWS IPv6"},
		{"fec0::1", "site-local (deprecated)", "", ""},
		{"ff02::1", "multicast", "", ""},
		{"2001:db8::1", "documentation", "", ""},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo", "", ""},
		{"100::1", "discard-only", "", ""},
		{"2606:4700:4700::1111", "", "", "public"},

		// IPv4 inside IPv6.
		{"::ffff:127.0.0.1", "loopback", "IPv4-mapped", ""},
		{"::ffff:169.254.169.254", "cloud metadata", "IPv4-mapped", ""},
		{"::ffff:10.1.2.3", "private (RFC 1918)", "IPv4-mapped", ""},
		{"::ffff:8.8.8.8", "", "", "mapped public"},
		{"64:ff9b::7f00:1", "loopback", "NAT64", ""},
		{"64:ff9b::a9fe:a9fe", "cloud metadata", "NAT64", ""},
		{"64:ff9b::c0a8:101", "private (RFC 1918)", "NAT64", ""},
		{"64:ff9b::808:808", "", "", "NAT64 of a public address"},
		{"64:ff9b:1::a00:1", "NAT64 local use", "", ""},
		{"2002:7f00:1::1", "loopback", "6to4", ""},
		{"2002:a9fe:a9fe::1", "cloud metadata", "6to4", ""},
		{"2002:808:808::1", "", "", "6to4 of a public address"},
		{"::ffff:0:7f00:1", "loopback", "IPv4-translated", ""},
	}
	for _, tt := range tests {
		addr := netip.MustParseAddr(tt.addr)
		err := v.CheckAddress("", "registry.npmjs.org", 443, addr)
		if tt.rng == "" {
			if err != nil {
				t.Errorf("%s (%s): %v, want allowed", tt.addr, tt.label, err)
			}
			continue
		}
		var blocked *BlockedAddressError
		if !errors.As(err, &blocked) {
			t.Errorf("%s: %v, want blocked as %s", tt.addr, err, tt.rng)
			continue
		}
		if blocked.Range != tt.rng || blocked.Via != tt.via {
			t.Errorf("%s: blocked as %q via %q, want %q via %q", tt.addr, blocked.Range, blocked.Via, tt.rng, tt.via)
		}
		if blocked.Addr != addr || blocked.Host != "registry.npmjs.org" || blocked.Port != 443 {
			t.Errorf("%s: error fields %+v", tt.addr, blocked)
		}
		if BlockedRange(addr) != tt.rng {
			t.Errorf("BlockedRange(%s) = %q, want %q", tt.addr, BlockedRange(addr), tt.rng)
		}
	}
}

// Only a rule or provider naming the exact destination reaches a blocked
// address.
func TestCheckAddressExactDestination(t *testing.T) {
	providers := testProviders(t,
		"local=http://10.0.0.5:8000/v1",
		"corp=https://llm.corp.example/v1",
	)
	p := testPolicy(t, Balanced,
		"allow 10.0.0.9:8000",            // r1: an address and port
		"allow db.internal.example:5432", // r2: a name and port
		"allow wiki.internal.example",    // r3: a name, any port
		"allow **.wild.example",          // r4: a wildcard never unlocks
		"allow 192.168.50.0/24",          // r5: a range
		"allow only-a.example @a",        // r6: one sandbox
		"deny 8.8.4.0/24",                // r7: a denied range
		"bypass mtls.internal.example",   // r8: bypass names it too
		"deny denied.internal.example",   // r9
		"allow api.example.com /v1/**",   // r10: a path rule names the host
		"deny 8.8.8.0/24 POST",           // r11: judges requests, not addresses
	)
	v := NewView(p, providers, nil)
	tests := []struct {
		name    string
		sandbox string
		host    string
		port    int
		addr    string
		ok      bool
	}{
		{"address rule", "", "10.0.0.9", 8000, "10.0.0.9", true},
		{"address rule other port", "", "10.0.0.9", 8001, "10.0.0.9", false},
		{"address rule other address", "", "10.0.0.10", 8000, "10.0.0.10", false},
		{"address rule by a name resolving to it", "", "x.example", 8000, "10.0.0.9", true},
		{"name and port", "", "db.internal.example", 5432, "10.1.1.1", true},
		{"name other port", "", "db.internal.example", 5433, "10.1.1.1", false},
		{"other name same address", "", "evil.example", 5432, "10.1.1.1", false},
		{"name any port", "", "wiki.internal.example", 8080, "172.20.0.3", true},
		{"name any port loopback", "", "wiki.internal.example", 80, "127.0.0.1", true},
		{"wildcard does not unlock", "", "a.wild.example", 443, "10.0.0.1", false},
		{"range", "", "nas.example", 443, "192.168.50.7", true},
		{"outside range", "", "nas.example", 443, "192.168.51.7", false},
		{"sandbox rule in its sandbox", "a", "only-a.example", 443, "10.3.3.3", true},
		{"sandbox rule elsewhere", "b", "only-a.example", 443, "10.3.3.3", false},
		{"bypass names it", "", "mtls.internal.example", 443, "10.4.4.4", true},
		{"deny does not unlock", "", "denied.internal.example", 443, "10.5.5.5", false},
		{"path rule names the host", "", "api.example.com", 443, "10.6.6.6", true},

		{"registered provider", "", "10.0.0.5", 8000, "10.0.0.5", true},
		{"registered provider other port", "", "10.0.0.5", 8001, "10.0.0.5", false},
		{"registered provider by name", "", "llm.corp.example", 443, "10.7.7.7", true},
		{"registered provider name other port", "", "llm.corp.example", 8443, "10.7.7.7", false},

		// Rebinding: names the preset or a built-in allows stay away from
		// private addresses.
		{"preset name to loopback", "", "registry.npmjs.org", 443, "127.0.0.1", false},
		{"preset name to metadata", "", "pypi.org", 80, "169.254.169.254", false},
		{"built-in provider to private", "", "api.openai.com", 443, "10.0.0.1", false},
		{"preset wildcard to private", "", "raw.githubusercontent.com", 443, "192.168.0.1", false},

		// A denied range refuses public addresses too.
		{"denied range", "", "dns.example", 443, "8.8.4.4", false},
		{"public address", "", "dns.example", 443, "8.8.8.8", true},
		{"public address with a method deny", "", "dns.example", 443, "8.8.8.9", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.CheckAddress(tt.sandbox, tt.host, tt.port, netip.MustParseAddr(tt.addr))
			if (err == nil) != tt.ok {
				t.Errorf("CheckAddress(%q, %s:%d, %s) = %v, want ok=%v", tt.sandbox, tt.host, tt.port, tt.addr, err, tt.ok)
			}
		})
	}

	// The denied range names its rule.
	var blocked *BlockedAddressError
	err := v.CheckAddress("", "dns.example", 443, netip.MustParseAddr("8.8.4.4"))
	if !errors.As(err, &blocked) || blocked.Rule == nil || blocked.Rule.ID != "r7" {
		t.Errorf("denied range: %v", err)
	}
}

func TestCheckAddressSelf(t *testing.T) {
	self := []netip.AddrPort{netip.MustParseAddrPort("8.8.4.4:3128"), netip.MustParseAddrPort("[2606:4700::1]:3128")}
	p := testPolicy(t, AllowAll, "allow 8.8.4.4:3128")
	v := NewView(p, nil, self)
	tests := []struct {
		addr string
		port int
		ok   bool
	}{
		{"8.8.4.4", 3128, false}, // not even a rule unlocks it
		{"::ffff:8.8.4.4", 3128, false},
		{"8.8.4.4", 443, true},
		{"2606:4700::1", 3128, false},
		{"2606:4700::1", 443, true},
	}
	for _, tt := range tests {
		err := v.CheckAddress("", "proxy.example", tt.port, netip.MustParseAddr(tt.addr))
		if (err == nil) != tt.ok {
			t.Errorf("CheckAddress(%s:%d) = %v, want ok=%v", tt.addr, tt.port, err, tt.ok)
		}
		var blocked *BlockedAddressError
		if errors.As(err, &blocked) && blocked.Range != rangeSelf {
			t.Errorf("CheckAddress(%s:%d) blocked as %q", tt.addr, tt.port, blocked.Range)
		}
	}

	// Through the engine.
	e := NewEngine(OpenStore(t.TempDir()), nil)
	e.SetSelf(self...)
	ev, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	if ev.CheckAddress("", "x.example", 3128, netip.MustParseAddr("8.8.4.4")) == nil {
		t.Error("engine view does not know the proxy's address")
	}
}

// A connection by address literal goes through both checks: the rules
// (Connect) and the ranges (CheckAddress).
func TestConnectByAddress(t *testing.T) {
	v := NewView(testPolicy(t, AllowAll), nil, nil)
	for _, host := range []string{"127.0.0.1", "169.254.169.254", "[::1]", "::ffff:127.0.0.1", "[64:ff9b::a9fe:a9fe]", "10.0.0.1"} {
		d := v.Connect("", host, 80)
		if d.Action != Allow {
			t.Fatalf("allow-all refused %s: %v", host, d)
		}
		h, ok := canonical(host)
		if !ok || !h.isAddr {
			t.Fatalf("canonical(%q) = %+v, %v", host, h, ok)
		}
		if err := v.CheckAddress("", host, 80, h.addr); err == nil {
			t.Errorf("%s passed the address check", host)
		}
	}
}

func TestBlockedAddressErrorMessage(t *testing.T) {
	v := NewView(testPolicy(t, Balanced), nil, nil)
	err := v.CheckAddress("", "registry.npmjs.org", 443, netip.MustParseAddr("64:ff9b::7f00:1"))
	want := "address 64:ff9b::7f00:1 of registry.npmjs.org is blocked as NAT64 form of loopback; " +
		"only an allow rule or provider naming that exact destination unlocks it"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
}

func TestExpandListenAddr(t *testing.T) {
	got, err := ExpandListenAddr(netip.MustParseAddrPort("127.0.0.1:3128"))
	if err != nil || len(got) != 1 || got[0].String() != "127.0.0.1:3128" {
		t.Errorf("concrete address: %v, %v", got, err)
	}
	got, err = ExpandListenAddr(netip.MustParseAddrPort("0.0.0.0:3128"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range got {
		if a.Port() != 3128 || !a.Addr().Is4() {
			t.Errorf("0.0.0.0 expanded to %s", a)
		}
		found = found || a.Addr().IsLoopback()
	}
	if !found {
		t.Errorf("0.0.0.0:3128 expanded to %v, without loopback", got)
	}
}
