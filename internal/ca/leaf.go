package ca

import (
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

const (
	// leafLifetime is how long a new leaf stays valid, at most: never past
	// the CA's own end.
	leafLifetime = 30 * 24 * time.Hour

	// leafRefresh is how close to its end a cached leaf is replaced, so
	// that a connection never starts with a certificate about to expire.
	leafRefresh = 24 * time.Hour

	// maxNameLen and maxLabelLen are the limits on a DNS name in text form
	// (without the final dot) and on each of its labels.
	maxNameLen  = 253
	maxLabelLen = 63
)

// ErrInvalidHost is wrapped by the errors Leaf returns for a host that cannot
// be named in a certificate.
var ErrInvalidHost = errors.New("invalid host name")

// Leaf returns a TLS server certificate for host, signed by the CA, with a
// key of its own. host is a DNS name or an IP address literal (without
// brackets, port or IPv6 zone); a DNS name is lower-cased and loses one final
// dot. Names with characters other than ASCII letters, digits, '-', '_' and
// '.' are refused with an error wrapping ErrInvalidHost; wildcards are
// refused too, so each certificate names exactly one host. An
// internationalised name must be given in its ASCII (punycode) form.
//
// A leaf is valid for 30 days, or until the CA expires if that is sooner.
// Up to DefaultLeafCacheSize leaves are cached, the least recently used
// dropped first, and a cached leaf is minted again once within a day of its
// expiry. Concurrent calls for one host share a single mint. The returned
// certificate is shared: the caller must not modify it.
//
// In the CA's last day every call mints a new leaf, since none can outlive
// the CA by a day; after the CA expires Leaf returns an error.
func (c *CA) Leaf(host string) (*tls.Certificate, error) {
	name, ip, err := normalizeHost(host)
	if err != nil {
		return nil, err
	}
	if cert := c.leaves.get(name, c.now()); cert != nil {
		c.hits.Add(1)
		return cert, nil
	}

	v, err, _ := c.flight.Do(name, func() (any, error) {
		// A mint for this host may have finished between the look-up above
		// and the start of this flight.
		now := c.now()
		if cert := c.leaves.get(name, now); cert != nil {
			c.hits.Add(1)
			return cert, nil
		}
		if c.testHookMint != nil {
			c.testHookMint()
		}
		cert, err := c.mint(name, ip, now)
		if err != nil {
			return nil, err
		}
		c.leaves.put(name, cert, c.leafCacheSize)
		return cert, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*tls.Certificate), nil
}

// mint creates a leaf certificate for name (which is ip's text form when ip
// is valid), valid from now.
func (c *CA) mint(name string, ip netip.Addr, now time.Time) (*tls.Certificate, error) {
	if !now.Before(c.cert.NotAfter) {
		return nil, fmt.Errorf("minting certificate for %s: the CA expired on %s; "+
			"remove %s and its key to create a new one",
			name, c.cert.NotAfter.Format(time.DateOnly), c.CertPath())
	}

	// Every leaf has a fresh key of its own, so that a leaf key, which
	// serves connections in the proxy's memory, reveals nothing about other
	// hosts' keys or the CA's.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("minting certificate for %s: %w", name, err)
	}
	c.minted.Add(1)
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("minting certificate for %s: %w", name, err)
	}

	notBefore := now.Add(-backdate)
	if notBefore.Before(c.cert.NotBefore) {
		notBefore = c.cert.NotBefore
	}
	notAfter := now.Add(leafLifetime)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"cordon"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		AuthorityKeyId:        c.cert.SubjectKeyId,
	}
	// The common name is only for people reading the certificate; clients
	// match the subject alternative name. It is limited to 64 characters.
	if len(name) <= 64 {
		template.Subject.CommonName = name
	}
	if ip.IsValid() {
		template.IPAddresses = []net.IP{ip.AsSlice()}
	} else {
		template.DNSNames = []string{name}
	}

	der, err := x509.CreateCertificate(rand.Reader, template, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("minting certificate for %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("minting certificate for %s: %w", name, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// normalizeHost checks host and returns the name a certificate for it
// carries, and the address when host is an IP literal.
func normalizeHost(host string) (name string, ip netip.Addr, err error) {
	if host == "" {
		return "", netip.Addr{}, fmt.Errorf("%w: empty", ErrInvalidHost)
	}
	h := strings.TrimSuffix(host, ".")

	// A colon can only be part of an IPv6 literal. Other hosts are parsed
	// as addresses only when they can be nothing else, because a failed
	// parse allocates and this runs on every cache hit.
	if strings.IndexByte(h, ':') >= 0 {
		addr, err := netip.ParseAddr(h)
		if err != nil {
			return "", netip.Addr{}, fmt.Errorf("%w %q: neither an IP address nor a DNS name "+
				"(a port or brackets do not belong in it)", ErrInvalidHost, host)
		}
		if addr.Zone() != "" {
			return "", netip.Addr{}, fmt.Errorf("%w %q: an IPv6 zone cannot be named in a certificate",
				ErrInvalidHost, host)
		}
		// An IPv4-mapped address is the IPv4 address for TLS clients.
		addr = addr.Unmap()
		return addr.String(), addr, nil
	}

	if len(h) > maxNameLen {
		return "", netip.Addr{}, fmt.Errorf("%w: %d bytes long; the limit is %d",
			ErrInvalidHost, len(h), maxNameLen)
	}
	numeric, upper := true, false
	label := 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", netip.Addr{}, fmt.Errorf("%w %q: empty label", ErrInvalidHost, host)
			}
			label = 0
			continue
		case '0' <= c && c <= '9':
		case 'a' <= c && c <= 'z', c == '-', c == '_':
			numeric = false
		case 'A' <= c && c <= 'Z':
			numeric, upper = false, true
		default:
			return "", netip.Addr{}, fmt.Errorf("%w %q: only ASCII letters, digits, '-', '_' and '.' "+
				"are allowed (an internationalised name must be in punycode)", ErrInvalidHost, host)
		}
		label++
		if label > maxLabelLen {
			return "", netip.Addr{}, fmt.Errorf("%w %q: a label is longer than %d bytes",
				ErrInvalidHost, host, maxLabelLen)
		}
	}
	if label == 0 {
		return "", netip.Addr{}, fmt.Errorf("%w %q: empty label", ErrInvalidHost, host)
	}

	if numeric {
		if addr, err := netip.ParseAddr(h); err == nil {
			return addr.String(), addr, nil
		}
	}
	if upper {
		h = lowerASCII(h)
	}
	return h, netip.Addr{}, nil
}

// lowerASCII lower-cases the ASCII letters of s. Unlike strings.ToLower it
// leaves every other byte alone, so no non-ASCII character can turn into an
// ASCII one.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// leafCache holds minted leaves by host name, in order of last use. The zero
// value is an empty cache.
type leafCache struct {
	mu     sync.Mutex
	byHost map[string]*list.Element // values are *leafEntry
	order  list.List                // most recently used at the front
}

type leafEntry struct {
	host      string
	cert      *tls.Certificate
	refreshAt time.Time // from then on the entry is not served
}

// get returns the cached leaf for host, or nil when there is none or it is
// due for replacement at now.
func (lc *leafCache) get(host string, now time.Time) *tls.Certificate {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	elem, ok := lc.byHost[host]
	if !ok {
		return nil
	}
	entry := elem.Value.(*leafEntry)
	if !now.Before(entry.refreshAt) {
		// Left in place: the mint that follows replaces it.
		return nil
	}
	lc.order.MoveToFront(elem)
	return entry.cert
}

// put stores cert for host, dropping the least recently used entries beyond
// limit. A limit of zero or less stores nothing.
func (lc *leafCache) put(host string, cert *tls.Certificate, limit int) {
	if limit <= 0 {
		return
	}
	entry := &leafEntry{host: host, cert: cert, refreshAt: cert.Leaf.NotAfter.Add(-leafRefresh)}

	lc.mu.Lock()
	defer lc.mu.Unlock()
	if elem, ok := lc.byHost[host]; ok {
		elem.Value = entry
		lc.order.MoveToFront(elem)
		return
	}
	if lc.byHost == nil {
		lc.byHost = make(map[string]*list.Element)
	}
	lc.byHost[host] = lc.order.PushFront(entry)
	for lc.order.Len() > limit {
		oldest := lc.order.Back()
		lc.order.Remove(oldest)
		delete(lc.byHost, oldest.Value.(*leafEntry).host)
	}
}

// len returns the number of cached leaves.
func (lc *leafCache) len() int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.order.Len()
}
