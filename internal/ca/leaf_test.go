package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newTestCA(t testing.TB) *CA {
	t.Helper()
	c, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// roots returns a pool holding only c's certificate.
func roots(c *CA) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c.Certificate())
	return pool
}

func TestLeaf(t *testing.T) {
	c := newTestCA(t)
	tests := []struct {
		host    string
		wantDNS []string
		wantIP  []string
		verify  string // a name the leaf must verify for
	}{
		{host: "example.com", wantDNS: []string{"example.com"}, verify: "example.com"},
		{host: "API.Example.COM.", wantDNS: []string{"api.example.com"}, verify: "api.example.com"},
		{host: "_acme.in-1.example", wantDNS: []string{"_acme.in-1.example"}, verify: "_acme.in-1.example"},
		{host: "localhost", wantDNS: []string{"localhost"}, verify: "localhost"},
		{host: "127.0.0.1", wantIP: []string{"127.0.0.1"}, verify: "127.0.0.1"},
		{host: "10.1.2.3.", wantIP: []string{"10.1.2.3"}, verify: "10.1.2.3"},
		{host: "::1", wantIP: []string{"::1"}, verify: "::1"},
		{host: "2001:DB8::0:1", wantIP: []string{"2001:db8::1"}, verify: "2001:db8::1"},
		{host: "::ffff:192.0.2.7", wantIP: []string{"192.0.2.7"}, verify: "192.0.2.7"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			before := time.Now()
			cert, err := c.Leaf(tt.host)
			if err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			leaf := cert.Leaf
			if leaf == nil {
				t.Fatal("tls.Certificate.Leaf is nil")
			}
			if !bytes.Equal(leaf.Raw, cert.Certificate[0]) {
				t.Error("Leaf does not match Certificate[0]")
			}

			var gotIP []string
			for _, ip := range leaf.IPAddresses {
				gotIP = append(gotIP, ip.String())
			}
			if diff := cmp.Diff(tt.wantDNS, leaf.DNSNames); diff != "" {
				t.Errorf("DNS names (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantIP, gotIP); diff != "" {
				t.Errorf("IP addresses (-want +got):\n%s", diff)
			}

			opts := x509.VerifyOptions{Roots: roots(c), DNSName: tt.verify}
			if _, err := leaf.Verify(opts); err != nil {
				t.Errorf("verifying for %q: %v", tt.verify, err)
			}
			opts.DNSName = "other.example"
			if _, err := leaf.Verify(opts); err == nil {
				t.Error("leaf verifies for other.example too")
			}

			if leaf.IsCA || !leaf.BasicConstraintsValid {
				t.Errorf("IsCA = %v, BasicConstraintsValid = %v; want false, true", leaf.IsCA, leaf.BasicConstraintsValid)
			}
			if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage = %v, want DigitalSignature only", leaf.KeyUsage)
			}
			if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, leaf.ExtKeyUsage); diff != "" {
				t.Errorf("ExtKeyUsage (-want +got):\n%s", diff)
			}
			if !bytes.Equal(leaf.AuthorityKeyId, c.Certificate().SubjectKeyId) {
				t.Errorf("AuthorityKeyId = %x, want the CA's %x", leaf.AuthorityKeyId, c.Certificate().SubjectKeyId)
			}
			key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
			if !ok || key.Curve != elliptic.P256() {
				t.Fatalf("private key is %T, want an ECDSA P-256 key", cert.PrivateKey)
			}
			if !key.PublicKey.Equal(leaf.PublicKey) {
				t.Error("private key does not match the certificate")
			}
			if key.PublicKey.Equal(c.key.Public()) {
				t.Error("leaf uses the CA's key")
			}

			// The CA was created moments ago, so the leaf may not start an
			// hour back: no earlier than the CA itself.
			lo := before.Add(-time.Hour)
			if caStart := c.Certificate().NotBefore; caStart.After(lo) {
				lo = caStart
			}
			checkWithin(t, "NotBefore", leaf.NotBefore, lo, after.Add(-time.Hour+time.Second))
			checkWithin(t, "NotAfter", leaf.NotAfter, before.Add(leafLifetime), after.Add(leafLifetime))
		})
	}
}

func TestNormalizeHost(t *testing.T) {
	tests := []struct {
		host    string
		want    string
		wantIP  bool
		wantErr string
	}{
		{host: "example.com", want: "example.com"},
		{host: "EXAMPLE.com.", want: "example.com"},
		{host: "a-b_c.d", want: "a-b_c.d"},
		{host: "1.2.3", want: "1.2.3"},
		{host: "1.2.3.4", want: "1.2.3.4", wantIP: true},
		{host: "1.2.3.4.", want: "1.2.3.4", wantIP: true},
		{host: "::FFFF:1.2.3.4", want: "1.2.3.4", wantIP: true},
		{host: "fe80::1", want: "fe80::1", wantIP: true},
		{host: strings.Repeat("a", 63) + ".com", want: strings.Repeat("a", 63) + ".com"},
		{host: strings.Repeat("a.", 126) + "b", want: strings.Repeat("a.", 126) + "b"},
		{host: strings.Repeat("a.", 126) + "b.", want: strings.Repeat("a.", 126) + "b"},

		{host: "", wantErr: "empty"},
		{host: ".", wantErr: "empty"},
		{host: "..", wantErr: "empty label"},
		{host: "example.com..", wantErr: "empty label"},
		{host: ".example.com", wantErr: "empty label"},
		{host: "a..b", wantErr: "empty label"},
		{host: "*.example.com", wantErr: "only ASCII"},
		{host: "exa mple.com", wantErr: "only ASCII"},
		{host: "example.com/x", wantErr: "only ASCII"},
		{host: "bücher.example", wantErr: "punycode"},
		// The Kelvin sign lower-cases to 'k' under Unicode rules; it must
		// not become an ASCII name.
		{host: "\u212aexample.com", wantErr: "only ASCII"},
		{host: "a\x00b", wantErr: "only ASCII"},
		{host: "example.com:443", wantErr: "port"},
		{host: "[::1]", wantErr: "port or brackets"},
		{host: "fe80::1%eth0", wantErr: "zone"},
		{host: "1.2.3.4%eth0", wantErr: "only ASCII"},
		{host: strings.Repeat("a", 64) + ".com", wantErr: "longer than 63"},
		{host: strings.Repeat("a.", 127) + "b", wantErr: "limit is 253"},
	}
	for _, tt := range tests {
		name := tt.host
		if len(name) > 40 {
			name = fmt.Sprintf("%s...(%d)", name[:20], len(name))
		}
		t.Run(name, func(t *testing.T) {
			got, ip, err := normalizeHost(tt.host)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("normalizeHost(%q) = %q, want an error", tt.host, got)
				}
				if !errors.Is(err, ErrInvalidHost) {
					t.Errorf("error does not wrap ErrInvalidHost: %v", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error does not say %q: %v", tt.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || ip.IsValid() != tt.wantIP {
				t.Errorf("normalizeHost(%q) = %q, IP %v; want %q, IP %v", tt.host, got, ip.IsValid(), tt.want, tt.wantIP)
			}
		})
	}
}

func TestLeafRejectsHost(t *testing.T) {
	c := newTestCA(t)
	for _, host := range []string{"", "*.example.com", "fe80::1%lo", "a b"} {
		if _, err := c.Leaf(host); !errors.Is(err, ErrInvalidHost) {
			t.Errorf("Leaf(%q) error = %v, want ErrInvalidHost", host, err)
		}
	}
	if minted, _ := c.LeafStats(); minted != 0 {
		t.Errorf("minted %d leaves for invalid hosts", minted)
	}
}

func TestLeafHandshake(t *testing.T) {
	c := newTestCA(t)
	stranger := newTestCA(t)
	tests := []struct {
		name       string
		host       string
		roots      *x509.CertPool
		serverName string
		wantErr    bool
	}{
		{name: "DNS name", host: "api.example.com", roots: roots(c), serverName: "api.example.com"},
		{name: "IPv4", host: "127.0.0.1", roots: roots(c), serverName: "127.0.0.1"},
		{name: "IPv6", host: "::1", roots: roots(c), serverName: "::1"},
		{
			name: "other name", host: "api.example.com",
			roots: roots(c), serverName: "evil.example.com", wantErr: true,
		},
		{
			name: "other CA", host: "api.example.com",
			roots: roots(stranger), serverName: "api.example.com", wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := c.Leaf(tt.host)
			if err != nil {
				t.Fatal(err)
			}
			peer, err := handshake(cert, tt.roots, tt.serverName)
			if tt.wantErr {
				if err == nil {
					t.Fatal("handshake succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !peer.Equal(cert.Leaf) {
				t.Error("client saw a certificate other than the leaf")
			}
		})
	}
}

// handshake runs a TLS server presenting cert and a client that trusts only
// pool and expects name, over a loopback connection; it exchanges a message
// and returns the certificate the client saw.
func handshake(cert *tls.Certificate, pool *x509.CertPool, name string) (*x509.Certificate, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)

	serverDone := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			serverDone <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(deadline)
		server := tls.Server(conn, &tls.Config{
			Certificates: []tls.Certificate{*cert},
			NextProtos:   []string{"h2", "http/1.1"},
		})
		buf := make([]byte, 5)
		if _, err := io.ReadFull(server, buf); err != nil {
			serverDone <- err
			return
		}
		_, err = server.Write(buf)
		serverDone <- err
	}()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	client := tls.Client(conn, &tls.Config{
		RootCAs:    pool,
		ServerName: name,
		NextProtos: []string{"h2", "http/1.1"},
	})
	if err := client.Handshake(); err != nil {
		conn.Close()
		<-serverDone
		return nil, err
	}
	if _, err := client.Write([]byte("hello")); err != nil {
		return nil, err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(client, buf); err != nil {
		return nil, err
	}
	if string(buf) != "hello" {
		return nil, fmt.Errorf("echo = %q, want %q", buf, "hello")
	}
	if err := <-serverDone; err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	state := client.ConnectionState()
	if state.NegotiatedProtocol != "h2" {
		return nil, fmt.Errorf("negotiated %q, want h2", state.NegotiatedProtocol)
	}
	return state.PeerCertificates[0], nil
}

func TestLeafCacheHit(t *testing.T) {
	c := newTestCA(t)
	first, err := c.Leaf("example.com")
	if err != nil {
		t.Fatal(err)
	}
	// Another spelling of the same host is the same cache entry.
	second, err := c.Leaf("Example.Com.")
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Error("second call returned a different certificate")
	}
	minted, hits := c.LeafStats()
	if minted != 1 || hits != 1 {
		t.Errorf("LeafStats() = %d minted, %d hits; want 1, 1", minted, hits)
	}
}

func TestLeafConcurrentSameHost(t *testing.T) {
	c := newTestCA(t)

	// The first mint waits until the other callers have had time to miss
	// the cache; they must then wait for it rather than mint their own.
	entered := make(chan struct{}, 64)
	release := make(chan struct{})
	c.testHookMint = func() {
		entered <- struct{}{}
		<-release
	}

	const n = 32
	certs := make([]*tls.Certificate, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			certs[i], errs[i] = c.Leaf("same.example")
		})
	}
	<-entered
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()

	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if certs[i] != certs[0] {
			t.Errorf("call %d got a different certificate from call 0", i)
		}
	}
	if minted, _ := c.LeafStats(); minted != 1 {
		t.Errorf("minted %d leaves for one host, want 1", minted)
	}
}

func TestLeafConcurrentHosts(t *testing.T) {
	c := newTestCA(t)
	c.leafCacheSize = 4
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			for j := range 8 {
				host := fmt.Sprintf("h%d.example", (i+j)%6)
				cert, err := c.Leaf(host)
				if err != nil {
					errs <- err
					return
				}
				if cert.Leaf.DNSNames[0] != host {
					errs <- fmt.Errorf("asked for %s, got %s", host, cert.Leaf.DNSNames[0])
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := c.leaves.len(); got > 4 {
		t.Errorf("cache holds %d leaves, bound is 4", got)
	}
}

func TestLeafEviction(t *testing.T) {
	c := newTestCA(t)
	c.leafCacheSize = 3

	// Each step is a call and the counters it must leave behind.
	steps := []struct {
		host       string
		wantMinted uint64
		wantHits   uint64
	}{
		{"a.example", 1, 0},
		{"b.example", 2, 0},
		{"c.example", 3, 0},
		{"a.example", 3, 1}, // a becomes the most recently used
		{"d.example", 4, 1}, // evicts b, the least recently used
		{"a.example", 4, 2},
		{"c.example", 4, 3},
		{"d.example", 4, 4},
		{"b.example", 5, 4}, // minted again; evicts a
		{"a.example", 6, 4},
	}
	for i, step := range steps {
		if _, err := c.Leaf(step.host); err != nil {
			t.Fatal(err)
		}
		minted, hits := c.LeafStats()
		if minted != step.wantMinted || hits != step.wantHits {
			t.Fatalf("after step %d (%s): %d minted, %d hits; want %d, %d",
				i, step.host, minted, hits, step.wantMinted, step.wantHits)
		}
		if got := c.leaves.len(); got > 3 {
			t.Fatalf("after step %d: cache holds %d leaves, bound is 3", i, got)
		}
	}
}

func TestLeafCacheDisabled(t *testing.T) {
	c := newTestCA(t)
	c.leafCacheSize = 0
	for range 3 {
		if _, err := c.Leaf("example.com"); err != nil {
			t.Fatal(err)
		}
	}
	if minted, hits := c.LeafStats(); minted != 3 || hits != 0 {
		t.Errorf("LeafStats() = %d minted, %d hits; want 3, 0", minted, hits)
	}
}

func TestLeafExpiry(t *testing.T) {
	c := newTestCA(t)
	start := time.Now().Truncate(time.Second)
	now := start
	c.now = func() time.Time { return now }

	first, err := c.Leaf("example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := first.Leaf.NotAfter, start.Add(leafLifetime); !got.Equal(want) {
		t.Fatalf("NotAfter = %v, want %v", got, want)
	}

	steps := []struct {
		at      time.Duration // after start
		wantNew bool
	}{
		{at: time.Hour},
		{at: leafLifetime - leafRefresh - time.Second},
		{at: leafLifetime - leafRefresh, wantNew: true},
	}
	prev := first
	for _, step := range steps {
		now = start.Add(step.at)
		cert, err := c.Leaf("example.com")
		if err != nil {
			t.Fatal(err)
		}
		if gotNew := cert != prev; gotNew != step.wantNew {
			t.Errorf("at start+%v: new certificate = %v, want %v", step.at, gotNew, step.wantNew)
		}
		if !now.Before(cert.Leaf.NotAfter.Add(-leafRefresh)) {
			t.Errorf("at start+%v: served a certificate ending %v", step.at, cert.Leaf.NotAfter)
		}
		prev = cert
	}
	if minted, _ := c.LeafStats(); minted != 2 {
		t.Errorf("minted %d leaves, want 2", minted)
	}
}

func TestLeafEndsWithCA(t *testing.T) {
	c := newTestCA(t)
	caEnd := c.Certificate().NotAfter

	now := caEnd.Add(-10 * 24 * time.Hour)
	c.now = func() time.Time { return now }
	cert, err := c.Leaf("example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !cert.Leaf.NotAfter.Equal(caEnd) {
		t.Errorf("NotAfter = %v, want the CA's end %v", cert.Leaf.NotAfter, caEnd)
	}

	now = caEnd.Add(time.Second)
	if _, err := c.Leaf("example.com"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Leaf after the CA expired: error = %v, want one saying it expired", err)
	}
}

func TestSerials(t *testing.T) {
	c := newTestCA(t)
	seen := map[string]string{c.Certificate().SerialNumber.String(): "the CA"}
	for i := range 64 {
		host := fmt.Sprintf("h%d.example", i)
		cert, err := c.Leaf(host)
		if err != nil {
			t.Fatal(err)
		}
		serial := cert.Leaf.SerialNumber
		if serial.Sign() <= 0 || serial.BitLen() < 120 {
			t.Errorf("%s: serial %x has %d bits, want a positive serial of at least 120", host, serial, serial.BitLen())
		}
		if other, ok := seen[serial.String()]; ok {
			t.Errorf("%s: serial %x is also %s's", host, serial, other)
		}
		seen[serial.String()] = host
	}
}

func TestLeafKeysDistinct(t *testing.T) {
	c := newTestCA(t)
	c.leafCacheSize = 0
	keys := []*ecdsa.PublicKey{c.key.Public().(*ecdsa.PublicKey)}
	for _, host := range []string{"a.example", "a.example", "b.example"} {
		cert, err := c.Leaf(host)
		if err != nil {
			t.Fatal(err)
		}
		key := cert.Leaf.PublicKey.(*ecdsa.PublicKey)
		for _, k := range keys {
			if key.Equal(k) {
				t.Errorf("%s: key used twice", host)
			}
		}
		keys = append(keys, key)
	}
}

// TestPathLength checks that nothing below the CA can act as a CA: neither a
// leaf it minted nor a certificate that claims to be an intermediate.
func TestPathLength(t *testing.T) {
	c := newTestCA(t)
	leaf, err := c.Leaf("leaf.example")
	if err != nil {
		t.Fatal(err)
	}

	// An intermediate CA signed with the CA's key, as a stolen key or a bug
	// might produce one.
	midKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	midTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: "intermediate"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	midDER, err := x509.CreateCertificate(rand.Reader, midTemplate, c.Certificate(),
		&midKey.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	mid, err := x509.ParseCertificate(midDER)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		issuer    *x509.Certificate
		issuerKey any
		// wantErr reports whether Verify failed for the expected reason.
		wantErr func(error) bool
	}{
		{
			name:      "signed by a leaf",
			issuer:    leaf.Leaf,
			issuerKey: leaf.PrivateKey,
			wantErr: func(err error) bool {
				// Go drops a non-CA intermediate from the chain.
				var unknown x509.UnknownAuthorityError
				return errors.As(err, &unknown)
			},
		},
		{
			name:      "signed by an intermediate",
			issuer:    mid,
			issuerKey: midKey,
			wantErr: func(err error) bool {
				var invalid x509.CertificateInvalidError
				return errors.As(err, &invalid) && invalid.Reason == x509.TooManyIntermediates
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			template := &x509.Certificate{
				SerialNumber: big.NewInt(3),
				NotBefore:    time.Now().Add(-time.Hour),
				NotAfter:     time.Now().Add(time.Hour),
				KeyUsage:     x509.KeyUsageDigitalSignature,
				ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				DNSNames:     []string{"victim.example"},
			}
			der, err := x509.CreateCertificate(rand.Reader, template, tt.issuer, &key.PublicKey, tt.issuerKey)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			intermediates := x509.NewCertPool()
			intermediates.AddCert(tt.issuer)
			_, err = cert.Verify(x509.VerifyOptions{
				Roots:         roots(c),
				Intermediates: intermediates,
				DNSName:       "victim.example",
			})
			if !tt.wantErr(err) {
				t.Errorf("Verify error = %v", err)
			}
		})
	}

	// The check above must be able to pass: the leaf itself verifies.
	opts := x509.VerifyOptions{Roots: roots(c), DNSName: "leaf.example"}
	if _, err := leaf.Leaf.Verify(opts); err != nil {
		t.Errorf("the leaf itself does not verify: %v", err)
	}
}

func FuzzLeafHost(f *testing.F) {
	for _, host := range []string{
		"example.com", "EXAMPLE.com.", "a_b-c.d", "127.0.0.1", "::1",
		"::ffff:1.2.3.4", "fe80::1%eth0", "*.example.com", "", ".", "a..b",
		"1.2.3", "\u212a.example", "[::1]:443", strings.Repeat("a", 64),
	} {
		f.Add(host)
	}
	c, err := LoadOrCreate(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	c.leafCacheSize = 16
	pool := roots(c)

	f.Fuzz(func(t *testing.T, host string) {
		cert, err := c.Leaf(host)
		if err != nil {
			if !errors.Is(err, ErrInvalidHost) {
				t.Fatalf("Leaf(%q): unexpected error %v", host, err)
			}
			return
		}

		// Work out independently what the certificate should name.
		trimmed := strings.TrimSuffix(host, ".")
		leaf := cert.Leaf
		if addr, err := netip.ParseAddr(trimmed); err == nil {
			want := net.IP(addr.Unmap().AsSlice())
			if len(leaf.DNSNames) != 0 || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(want) {
				t.Fatalf("Leaf(%q): DNS %q, IP %v; want IP %v only", host, leaf.DNSNames, leaf.IPAddresses, want)
			}
			return
		}
		want := strings.ToLower(trimmed)
		if len(leaf.IPAddresses) != 0 || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != want {
			t.Fatalf("Leaf(%q): DNS %q, IP %v; want DNS %q only", host, leaf.DNSNames, leaf.IPAddresses, want)
		}
		for i := 0; i < len(want); i++ {
			if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyz0123456789-_.", rune(want[i])) {
				t.Fatalf("Leaf(%q) accepted byte %q", host, want[i])
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: want}); err != nil {
			t.Fatalf("Leaf(%q) does not verify for %q: %v", host, want, err)
		}
	})
}

func BenchmarkLeafMint(b *testing.B) {
	c := newTestCA(b)
	c.leafCacheSize = 0
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Leaf("bench.example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLeafCacheHit(b *testing.B) {
	c := newTestCA(b)
	if _, err := c.Leaf("bench.example.com"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Leaf("bench.example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLeafCacheHitParallel(b *testing.B) {
	c := newTestCA(b)
	hosts := make([]string, 64)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%d.example.com", i)
		if _, err := c.Leaf(hosts[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := c.Leaf(hosts[i%len(hosts)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
