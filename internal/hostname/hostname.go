// Package hostname puts host names and address literals into the one form
// that cordon compares: the provider matcher, the policy and the proxy all
// see "API.OpenAI.com.", "api.openai.com" and an IDN's punycode alike.
package hostname

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// MaxLen is the longest host name accepted, as in DNS.
const MaxLen = 253

// profile converts internationalised names to their ASCII form with the
// strict rules used for lookups, and rejects names a resolver would not.
var profile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
	idna.ValidateLabels(true),
	idna.StrictDomainName(false), // '_' appears in real service names
)

// Normalize returns host in canonical form: lower case, without a trailing
// dot, internationalised labels in punycode, IPv6 literals without brackets
// and IPv4-mapped IPv6 addresses as plain IPv4. It refuses empty names,
// characters that cannot appear in a host name, IPv6 zones, and names whose
// last label is numeric, which some resolvers would read as an IPv4 address
// in a legacy form ("2130706433", "0x7f.1").
func Normalize(host string) (string, error) {
	if host == "" {
		return "", errors.New("empty host name")
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
		addr, err := netip.ParseAddr(host)
		if err != nil || !addr.Is6() {
			return "", fmt.Errorf("invalid IPv6 address %q", host)
		}
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		if addr.Zone() != "" {
			return "", fmt.Errorf("address %q has a zone; zones are not accepted", host)
		}
		return addr.Unmap().String(), nil
	}
	if strings.ContainsAny(host, ":%[]") {
		return "", fmt.Errorf("invalid host %q", host)
	}

	name := strings.TrimSuffix(host, ".")
	if name == "" || strings.HasSuffix(name, ".") {
		return "", fmt.Errorf("invalid host name %q", host)
	}
	if !isASCII(name) {
		ascii, err := profile.ToASCII(name)
		if err != nil {
			return "", fmt.Errorf("invalid international host name %q: %v", host, err)
		}
		name = ascii
	}
	name = strings.ToLower(name)
	if err := checkName(name); err != nil {
		return "", fmt.Errorf("invalid host name %q: %v", host, err)
	}
	return name, nil
}

// IsIP reports whether a normalised host is an address literal.
func IsIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// checkName validates an ASCII, lower-case name label by label.
func checkName(name string) error {
	if len(name) > MaxLen {
		return fmt.Errorf("longer than %d characters", MaxLen)
	}
	labels := strings.Split(name, ".")
	for _, label := range labels {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > 63 {
			return errors.New("a label is longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("a label starts or ends with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("character %q is not allowed", c)
			}
		}
	}
	if isNumeric(labels[len(labels)-1]) {
		return errors.New("the last label is numeric, which reads as an IPv4 address")
	}
	return nil
}

// isNumeric reports whether label is a number in the forms that legacy
// IPv4 parsers accept: decimal, octal or 0x-prefixed hexadecimal.
func isNumeric(label string) bool {
	digits := label
	hex := false
	if strings.HasPrefix(label, "0x") {
		digits, hex = label[2:], true
		if digits == "" {
			return true
		}
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if '0' <= c && c <= '9' || hex && 'a' <= c && c <= 'f' {
			continue
		}
		return false
	}
	return true
}
