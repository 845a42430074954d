package policy

import (
	"fmt"
	"net"
	"net/netip"
)

// BlockedAddressError is CheckAddress's refusal of one resolved address.
type BlockedAddressError struct {
	Host string     // the destination as asked for, normalised
	Port int        // the destination port
	Addr netip.Addr // the address refused
	// Range names the blocked range: "loopback", "cloud metadata",
	// "private (RFC 1918)", "the proxy's own address", ... Empty when a
	// deny rule refused the address (see Rule).
	Range string
	// Via names the IPv6 form that embeds a blocked IPv4 address
	// ("IPv4-mapped", "NAT64", "6to4"); empty for a plain address.
	Via string
	// Rule is the deny rule naming the address or its range, when that is
	// what refused it.
	Rule *Rule
}

func (e *BlockedAddressError) Error() string {
	if e.Rule != nil {
		return fmt.Sprintf("address %s of %s is denied by rule %s (%s)", e.Addr, e.Host, e.Rule.ID, e.Rule)
	}
	if e.Range == rangeSelf {
		return fmt.Sprintf("address %s of %s is blocked as %s", e.Addr, e.Host, rangeSelf)
	}
	what := e.Range
	if e.Via != "" {
		what = e.Via + " form of " + what
	}
	return fmt.Sprintf("address %s of %s is blocked as %s; only an allow rule or provider naming that exact destination unlocks it",
		e.Addr, e.Host, what)
}

const rangeSelf = "the proxy's own address"

// blockedRange is one range of addresses a sandbox may not reach by
// default.
type blockedRange struct {
	prefix netip.Prefix
	name   string
}

func blocked(cidr, name string) blockedRange {
	return blockedRange{netip.MustParsePrefix(cidr), name}
}

// blocked4 and blocked6 list the blocked ranges; a more specific range
// comes before the one containing it, so that it names the address.
var blocked4 = []blockedRange{
	blocked("0.0.0.0/8", "unspecified"),
	blocked("10.0.0.0/8", "private (RFC 1918)"),
	// Alibaba Cloud's metadata endpoint sits in the shared address space.
	blocked("100.100.100.200/32", "cloud metadata"),
	blocked("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
	blocked("127.0.0.0/8", "loopback"),
	blocked("169.254.169.254/32", "cloud metadata"),
	blocked("169.254.0.0/16", "link-local"),
	blocked("172.16.0.0/12", "private (RFC 1918)"),
	// Azure's host endpoint (WireServer) is a public address that answers
	// only from inside the VM.
	blocked("168.63.129.16/32", "cloud metadata"),
	blocked("192.0.0.0/24", "IETF protocol assignments"),
	blocked("192.0.2.0/24", "documentation"),
	blocked("192.88.99.0/24", "6to4 relay (deprecated)"),
	blocked("192.168.0.0/16", "private (RFC 1918)"),
	blocked("198.18.0.0/15", "benchmarking"),
	blocked("198.51.100.0/24", "documentation"),
	blocked("203.0.113.0/24", "documentation"),
	blocked("224.0.0.0/4", "multicast"),
	blocked("255.255.255.255/32", "broadcast"),
	blocked("240.0.0.0/4", "reserved"),
}

var blocked6 = []blockedRange{
	blocked("::/128", "unspecified"),
	blocked("::1/128", "loopback"),
	// The deprecated IPv4-compatible form (::a.b.c.d); some stacks still
	// route it to the IPv4 address.
	blocked("::/96", "IPv4-compatible (deprecated)"),
	blocked("64:ff9b:1::/48", "NAT64 local use"),
	blocked("100::/64", "discard-only"),
	// Teredo embeds addresses, obfuscated, that cannot be checked
	// reliably; it has no remaining legitimate use from a sandbox.
	blocked("2001::/32", "Teredo"),
	blocked("2001:2::/48", "benchmarking"),
	blocked("2001:db8::/32", "documentation"),
	blocked("3fff::/20", "documentation"),
	// AWS's IPv6 metadata endpoint.
	blocked("fd00:ec2::254/128", "cloud metadata"),
	blocked("fc00::/7", "unique local"),
	blocked("fe80::/10", "link-local"),
	blocked("fec0::/10", "site-local (deprecated)"),
	blocked("ff00::/8", "multicast"),
}

// IPv6 forms that carry an IPv4 address, which is checked in their place.
var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour  = netip.MustParsePrefix("2002::/16")
	translated = netip.MustParsePrefix("::ffff:0:0:0/96")
)

// classify returns the blocked range addr lies in, and the IPv6 form it
// was found through, or "" when addr is public. It does not allocate.
func classify(addr netip.Addr) (name, via string) {
	addr = addr.WithZone("")
	if addr.Is4In6() {
		name, _ = classify4(addr.Unmap())
		return name, "IPv4-mapped"
	}
	if addr.Is4() {
		return classify4(addr)
	}
	b := addr.As16()
	switch {
	case nat64.Contains(addr):
		name, _ = classify4(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		return name, "NAT64"
	case translated.Contains(addr):
		name, _ = classify4(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		return name, "IPv4-translated"
	case sixToFour.Contains(addr):
		name, _ = classify4(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
		return name, "6to4"
	}
	for _, r := range blocked6 {
		if r.prefix.Contains(addr) {
			return r.name, ""
		}
	}
	return "", ""
}

// range4 is a blocked IPv4 range as integers, which compare several times
// faster than netip.Prefix.Contains.
type range4 struct {
	base, mask uint32
	name       string
}

var blocked4Fast = func() []range4 {
	out := make([]range4, len(blocked4))
	for i, r := range blocked4 {
		out[i] = range4{ipv4Uint(r.prefix.Addr()), ^uint32(0) << (32 - r.prefix.Bits()), r.name}
	}
	return out
}()

func ipv4Uint(addr netip.Addr) uint32 {
	b := addr.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func classify4(addr netip.Addr) (string, string) {
	ip := ipv4Uint(addr)
	for _, r := range blocked4Fast {
		if ip&r.mask == r.base {
			return r.name, ""
		}
	}
	return "", ""
}

// BlockedRange reports the name of the blocked range addr lies in
// ("loopback", "cloud metadata", ...), or "" for a public address. It
// knows nothing of rules; see View.CheckAddress.
func BlockedRange(addr netip.Addr) string {
	name, _ := classify(addr)
	return name
}

// CheckAddress checks one address that host resolved to, before the proxy
// dials addr at port for sandbox. It returns a *BlockedAddressError when
// the address is:
//
//   - one of the proxy's own listening addresses and port;
//   - named, or contained in a range named, by a deny rule in force for
//     sandbox (with the rule's port, if it gives one);
//   - in a blocked range (loopback, private, link-local and cloud
//     metadata, carrier-grade NAT, unique-local, multicast, broadcast,
//     reserved, documentation, and the IPv4-mapped, NAT64, 6to4 and
//     IPv4-translated forms of those), unless a rule names that exact
//     destination.
//
// A rule names the exact destination when it is an allow or bypass rule in
// force for sandbox whose pattern is host itself (not a wildcard; with the
// rule's port, if it gives one), the address itself, or a range containing
// it; or when a registered provider has an endpoint at host and port.
// Preset rules, wildcard rules and built-in providers never unlock a
// blocked range, so a public name that resolves to 127.0.0.1 stays
// refused.
//
// Check every address a name resolved to, for intercepted and bypassed
// connections alike, and dial only one that passed. CheckAddress does not
// allocate when the address is allowed.
func (v *View) CheckAddress(sandbox, host string, port int, addr netip.Addr) error {
	h, ok := canonical(host)
	if !ok {
		h = target{name: host}
	}
	addr = addr.WithZone("")
	plain := addr.Unmap()

	for _, self := range v.self {
		if int(self.Port()) == port && self.Addr().WithZone("").Unmap() == plain {
			return &BlockedAddressError{Host: h.name, Port: port, Addr: addr, Range: rangeSelf}
		}
	}

	// Rules on addresses and ranges: a deny refuses, an allow or bypass
	// names the destination.
	unlocked := false
	for i := range v.userAddrs {
		r := &v.userAddrs[i]
		if r.port != 0 && r.port != port || r.sandbox != "" && r.sandbox != sandbox ||
			!r.prefix.Contains(plain) {
			continue
		}
		if r.deny {
			return &BlockedAddressError{Host: h.name, Port: port, Addr: addr, Rule: r.rule}
		}
		unlocked = true
	}

	name, via := classify(addr)
	if name == "" || unlocked {
		return nil
	}
	if ok && !h.isAddr {
		for _, c := range v.exact[h.name] {
			if c.source == SourceRule && c.rule.Action != Deny && c.appliesTo(sandbox) &&
				(c.host.Port == 0 || c.host.Port == port) {
				return nil
			}
		}
	}
	if ok && v.registeredAt(h.name, port) != nil {
		return nil
	}
	return &BlockedAddressError{Host: h.name, Port: port, Addr: addr, Range: name, Via: via}
}

// ExpandListenAddr returns the addresses a listener on addr accepts
// connections at, for Engine.SetSelf: addr itself, or for an unspecified
// address (0.0.0.0, ::) every address of the host's interfaces at that
// port.
func ExpandListenAddr(addr netip.AddrPort) ([]netip.AddrPort, error) {
	if !addr.Addr().IsUnspecified() {
		return []netip.AddrPort{addr}, nil
	}
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing interface addresses: %w", err)
	}
	out := []netip.AddrPort{addr}
	for _, a := range ifaddrs {
		prefix, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := prefix.Addr().Unmap()
		// A listener on 0.0.0.0 takes only IPv4; one on :: takes both.
		if addr.Addr().Is4() && !ip.Is4() {
			continue
		}
		out = append(out, netip.AddrPortFrom(ip, addr.Port()))
	}
	return out, nil
}
