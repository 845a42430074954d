package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/cordon-dev/cordon/internal/hostname"
	"github.com/cordon-dev/cordon/internal/provider"
)

// PatternKind says what a HostPattern matches.
type PatternKind uint8

const (
	// KindName matches one host name exactly: "example.com".
	KindName PatternKind = iota + 1
	// KindOneLabel matches names exactly one label below a domain, not the
	// domain itself: "*.example.com" matches "api.example.com" but neither
	// "example.com" nor "a.b.example.com".
	KindOneLabel
	// KindAnyDepth matches names any number of labels below a domain, not
	// the domain itself: "**.example.com" matches "api.example.com" and
	// "a.b.example.com" but not "example.com".
	KindAnyDepth
	// KindAddr matches one IP address given as the host.
	KindAddr
	// KindPrefix matches IP addresses in a CIDR range.
	KindPrefix
)

// HostPattern is the destination part of a rule. The zero value matches
// nothing.
//
// Name patterns match only host names and address patterns only address
// literals: "10.0.0.0/8" does not match a name that resolves into it (the
// address checks see resolved addresses; see View.CheckAddress).
type HostPattern struct {
	Kind PatternKind
	// Name is the normalised host name for KindName, and the domain below
	// which names match for the wildcard kinds ("example.com" for
	// "*.example.com").
	Name string
	// Addr is the address for KindAddr, always in its unmapped form.
	Addr netip.Addr
	// Prefix is the masked range for KindPrefix.
	Prefix netip.Prefix
	// Port limits the pattern to one port; 0 means any port. A range never
	// has a port.
	Port int
}

// ParseHostPattern parses one host pattern:
//
//	example.com          that host, any port
//	example.com:8443     that host, one port
//	*.example.com        exactly one label below example.com (not the apex)
//	**.example.com       any depth below example.com (not the apex)
//	10.0.0.5, 10.0.0.5:8000, 2001:db8::5, [2001:db8::5]:8000
//	10.0.0.0/8, fd00::/8 an address range (no port)
//
// Names are normalised with hostname.Normalize, so case, a trailing dot and
// internationalised labels do not matter.
func ParseHostPattern(s string) (HostPattern, error) {
	if s == "" {
		return HostPattern{}, errors.New("empty host pattern")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return HostPattern{}, fmt.Errorf("host pattern %q contains spaces or control characters", s)
		}
	}
	if strings.Contains(s, "://") {
		return HostPattern{}, fmt.Errorf("host pattern %q is a URL; give the host alone, such as example.com or example.com:8443", s)
	}
	if strings.ContainsAny(s, "?#@") {
		return HostPattern{}, fmt.Errorf("host pattern %q: give a host, not a URL", s)
	}

	// A slash makes an address range, or a host with a path by mistake.
	if strings.Contains(s, "/") {
		return parsePrefix(s)
	}

	host, port, err := splitPort(s)
	if err != nil {
		return HostPattern{}, err
	}

	// Wildcards: "*" or "**" as the whole first label.
	kind := KindName
	rest := host
	switch {
	case strings.HasPrefix(host, "**."):
		kind, rest = KindAnyDepth, host[3:]
	case strings.HasPrefix(host, "*."):
		kind, rest = KindOneLabel, host[2:]
	}
	if strings.Contains(rest, "*") {
		return HostPattern{}, fmt.Errorf("host pattern %q: '*' and '**' may only stand as the whole first label, as in *.example.com", s)
	}

	name, err := hostname.Normalize(rest)
	if err != nil {
		return HostPattern{}, fmt.Errorf("host pattern %q: %v", s, err)
	}
	if addr, err := netip.ParseAddr(name); err == nil {
		if kind != KindName {
			return HostPattern{}, fmt.Errorf("host pattern %q: a wildcard needs a domain name; for addresses use a CIDR range such as 10.0.0.0/8", s)
		}
		return HostPattern{Kind: KindAddr, Addr: addr, Port: port}, nil
	}
	return HostPattern{Kind: kind, Name: name, Port: port}, nil
}

// splitPort separates an optional ":port" from a host. An IPv6 address
// with a port must be in brackets; one without a port may be bare.
func splitPort(s string) (host string, port int, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return "", 0, fmt.Errorf("host pattern %q: missing ']'", s)
		}
		host, rest := s[:end+1], s[end+1:]
		if rest == "" {
			return host, 0, nil
		}
		if rest[0] != ':' {
			return "", 0, fmt.Errorf("host pattern %q: unexpected %q after ']'", s, rest)
		}
		port, err := parsePort(s, rest[1:])
		return host, port, err
	}
	switch strings.Count(s, ":") {
	case 0:
		return s, 0, nil
	case 1:
		host, p, _ := strings.Cut(s, ":")
		port, err := parsePort(s, p)
		return host, port, err
	}
	// Several colons: a bare IPv6 address, which takes no port.
	if _, err := netip.ParseAddr(s); err != nil {
		return "", 0, fmt.Errorf("host pattern %q: not an IPv6 address; write an address with a port as [2001:db8::1]:443", s)
	}
	return s, 0, nil
}

// parsePort reads a decimal port from 1 to 65535, without sign or leading
// zeros, so that each port has one spelling.
func parsePort(pattern, p string) (int, error) {
	if p == "" {
		return 0, fmt.Errorf("host pattern %q: empty port", pattern)
	}
	if len(p) > 5 || p[0] == '0' {
		return 0, fmt.Errorf("host pattern %q: invalid port %q", pattern, p)
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("host pattern %q: invalid port %q", pattern, p)
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, fmt.Errorf("host pattern %q: invalid port %q", pattern, p)
	}
	return n, nil
}

// parsePrefix reads a CIDR range. It must be masked (no bits set below
// the prefix length), so that what is stored is what the user meant.
func parsePrefix(s string) (HostPattern, error) {
	addrPart, _, _ := strings.Cut(s, "/")
	if _, err := netip.ParseAddr(addrPart); err != nil {
		if strings.Contains(addrPart, ":") && !strings.HasPrefix(addrPart, "[") {
			return HostPattern{}, fmt.Errorf("host pattern %q is not a CIDR range", s)
		}
		return HostPattern{}, fmt.Errorf("host pattern %q: a host takes no path (use --path for path rules), and %q is not a CIDR range", s, s)
	}
	prefix, err := netip.ParsePrefix(s)
	if err != nil {
		return HostPattern{}, fmt.Errorf("host pattern %q is not a CIDR range", s)
	}
	if prefix.Addr().Zone() != "" {
		return HostPattern{}, fmt.Errorf("host pattern %q: zones are not accepted", s)
	}
	if prefix.Addr().Is4In6() {
		return HostPattern{}, fmt.Errorf("host pattern %q: write IPv4-mapped ranges in their IPv4 form", s)
	}
	if masked := prefix.Masked(); masked != prefix {
		return HostPattern{}, fmt.Errorf("host pattern %q has bits set after the prefix length; did you mean %s?", s, masked)
	}
	return HostPattern{Kind: KindPrefix, Prefix: prefix}, nil
}

// ParseHostList parses a comma-separated list of host patterns, as given
// on the command line. Spaces around each item are ignored; an empty item
// is an error.
func ParseHostList(s string) ([]HostPattern, error) {
	var out []HostPattern
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("host list %q has an empty item", s)
		}
		p, err := ParseHostPattern(item)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// String returns the pattern's canonical form, which ParseHostPattern
// reads back to the same pattern.
func (p HostPattern) String() string {
	var host string
	switch p.Kind {
	case KindName:
		host = p.Name
	case KindOneLabel:
		host = "*." + p.Name
	case KindAnyDepth:
		host = "**." + p.Name
	case KindAddr:
		host = p.Addr.String()
		if p.Port != 0 && p.Addr.Is6() {
			host = "[" + host + "]"
		}
	case KindPrefix:
		return p.Prefix.String()
	default:
		return ""
	}
	if p.Port != 0 {
		return fmt.Sprintf("%s:%d", host, p.Port)
	}
	return host
}

// IsWildcard reports whether the pattern covers more than one host name.
func (p HostPattern) IsWildcard() bool {
	return p.Kind == KindOneLabel || p.Kind == KindAnyDepth
}

// Match reports whether the pattern covers host at port. host must be
// normalised (see hostname.Normalize). Match does not allocate.
func (p HostPattern) Match(host string, port int) bool {
	if p.Port != 0 && p.Port != port {
		return false
	}
	switch p.Kind {
	case KindAddr, KindPrefix:
		addr, ok := parseAddrFast(host)
		return ok && p.MatchAddr(addr)
	}
	return p.MatchName(host)
}

// MatchName reports whether a name pattern covers the normalised host
// name, ignoring the port. A match for "*.d" or "**.d" ends in "." + d, so
// "example.com" never covers "evil-example.com" or
// "example.com.evil".
func (p HostPattern) MatchName(host string) bool {
	switch p.Kind {
	case KindName:
		return host == p.Name
	case KindOneLabel, KindAnyDepth:
		below, ok := strings.CutSuffix(host, p.Name)
		if !ok || len(below) < 2 || below[len(below)-1] != '.' {
			return false
		}
		below = below[:len(below)-1]
		if p.Kind == KindOneLabel {
			return strings.IndexByte(below, '.') < 0
		}
		return below[0] != '.'
	}
	return false
}

// MatchAddr reports whether an address pattern covers addr, ignoring the
// port.
func (p HostPattern) MatchAddr(addr netip.Addr) bool {
	addr = addr.Unmap()
	switch p.Kind {
	case KindAddr:
		return addr == p.Addr
	case KindPrefix:
		return p.Prefix.Contains(addr)
	}
	return false
}

// parseAddrFast parses an address literal without allocating when host is
// not one: netip.ParseAddr allocates its error, and most hosts are names.
func parseAddrFast(host string) (netip.Addr, bool) {
	if !strings.ContainsRune(host, ':') && !looksIPv4(host) {
		return netip.Addr{}, false
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, false
	}
	return addr.Unmap(), true
}

// looksIPv4 reports whether s consists of digits and dots only.
func looksIPv4(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// CredentialHostError refuses a bypass rule for a host that a provider
// serves: a tunnel without interception would silently lose the
// credential.
type CredentialHostError struct {
	Pattern  string             // the bypass pattern
	Host     string             // the provider's host it covers
	Provider *provider.Provider // the provider with an endpoint there
}

func (e *CredentialHostError) Error() string {
	return fmt.Sprintf("cannot bypass %s: provider %s has its credential injected at %s, and a tunnel without interception would silently lose it",
		e.Pattern, e.Provider.Name, e.Host)
}

// CheckBypass refuses a bypass pattern that covers a host where any
// provider in set, built-in or registered, has an endpoint, on any port.
// It returns a *CredentialHostError or nil.
func CheckBypass(p HostPattern, set *provider.Set) error {
	if set == nil {
		return nil
	}
	for _, prov := range set.All() {
		for _, e := range prov.Endpoints {
			covered := false
			if addr, ok := parseAddrFast(e.Host); ok {
				covered = p.MatchAddr(addr)
			} else {
				covered = p.MatchName(e.Host)
			}
			if covered {
				return &CredentialHostError{Pattern: p.String(), Host: e.Host, Provider: prov}
			}
		}
	}
	return nil
}
