package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cordon-dev/cordon/internal/audit"
	"github.com/cordon-dev/cordon/internal/ca"
	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/secret"
)

// testPKI is a private CA for upstream test servers, standing in for a
// provider's own PKI.
type testPKI struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pemPath string
	pool    *x509.CertPool
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "upstream test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	path := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testPKI{cert: cert, key: key, pemPath: path, pool: pool}
}

// serverCert issues a certificate for the given names and addresses.
func (pki *testPKI) serverCert(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pki.cert, &key.PublicKey, pki.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// upstream is a test server that records what it received.
type upstream struct {
	*httptest.Server
	port int

	mu       sync.Mutex
	requests []*http.Request
}

// startUpstream starts a TLS server (HTTP/2 when h2 is set) for the names,
// signed by pki, serving h; every request is recorded before h runs.
func startUpstream(t testing.TB, pki *testPKI, h2 bool, h http.Handler, names ...string) *upstream {
	t.Helper()
	u := &upstream{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.requests = append(u.requests, r.Clone(context.Background()))
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = h2
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.serverCert(t, append(names, "127.0.0.1")...)}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	u.Server = srv
	u.port = srv.Listener.Addr().(*net.TCPAddr).Port
	return u
}

// startPlain starts a plain-HTTP upstream.
func startPlain(t testing.TB, h http.Handler) *upstream {
	t.Helper()
	u := &upstream{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.requests = append(u.requests, r.Clone(context.Background()))
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u.Server = srv
	u.port = srv.Listener.Addr().(*net.TCPAddr).Port
	return u
}

func (u *upstream) received() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.requests...)
}

// last returns the last request the upstream received, or nil.
func (u *upstream) last() *http.Request {
	r := u.received()
	if len(r) == 0 {
		return nil
	}
	return r[len(r)-1]
}

// echoHeaders answers with the request's credential headers as JSON-ish
// text, so tests can see what arrived.
var echoHeaders = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "proto=%s authorization=%q x-api-key=%q query=%q",
		r.Proto, r.Header.Values("Authorization"), r.Header.Values("X-Api-Key"), r.URL.RawQuery)
})

// events collects audit events.
type events struct {
	mu  sync.Mutex
	all []audit.Event
}

func (e *events) Record(ev audit.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

func (e *events) list() []audit.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]audit.Event(nil), e.all...)
}

// world is a running proxy with its state, and the clients to reach it.
type world struct {
	t       testing.TB
	dir     string
	ca      *ca.CA
	reg     *provider.Registry
	secrets *secret.FileStore
	proxy   *Proxy
	addr    string
	token   string
	events  *events
	logs    *syncBuffer
	hosts   map[string]netip.Addr
}

type worldOptions struct {
	sandbox string
	policy  Policy
	// config, when set, adjusts the proxy's configuration before New.
	config func(*Config)
}

// newWorld starts a proxy on loopback with a token. Host names ending in
// ".test" resolve to 127.0.0.1.
func newWorld(t testing.TB, opts worldOptions) *world {
	t.Helper()
	dir := t.TempDir()
	authority, err := ca.LoadOrCreate(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := secret.OpenFile(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	w := &world{
		t: t, dir: dir, ca: authority, reg: provider.OpenRegistry(filepath.Join(dir, "config")),
		secrets: store, events: &events{}, logs: &syncBuffer{}, token: "t0ken",
		hosts: map[string]netip.Addr{},
	}
	os.MkdirAll(filepath.Join(dir, "config"), 0o700)

	cfg := Config{
		CA: authority, Providers: w.reg.Set, Secrets: store, Audit: w.events, Policy: opts.policy,
		Logger: slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		LookupNetIP: func(ctx context.Context, host string) ([]netip.Addr, error) {
			if a, ok := w.hosts[host]; ok {
				return []netip.Addr{a}, nil
			}
			if strings.HasSuffix(host, ".test") {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			}
			return nil, fmt.Errorf("no such host %s", host)
		},
		HandshakeTimeout: 5 * time.Second,
	}
	if opts.config != nil {
		opts.config(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(l, Identity{Sandbox: opts.sandbox, Token: w.token})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	w.proxy, w.addr = p, l.Addr().String()
	return w
}

// addProvider registers a provider trusting pki for its upstream.
func (w *world) addProvider(spec provider.Spec) {
	w.t.Helper()
	if _, err := w.reg.Add(spec, true); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) setSecret(scope secret.Scope, service, value string) {
	w.t.Helper()
	if err := w.secrets.Set(scope, service, value, true); err != nil {
		w.t.Fatal(err)
	}
}

// client returns an HTTP client that goes through the proxy and trusts
// cordon's CA. h2 lets it negotiate HTTP/2 inside tunnels.
func (w *world) client(h2 bool) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(w.ca.Certificate())
	proxyURL := &url.URL{Scheme: "http", User: url.UserPassword("cordon", w.token), Host: w.addr}
	tr := &http.Transport{
		Proxy:             http.ProxyURL(proxyURL),
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	w.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport: tr,
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// tunnel opens a CONNECT tunnel to authority and returns the raw
// connection after the proxy's 200.
func (w *world) tunnel(authority string) net.Conn {
	w.t.Helper()
	conn, err := net.Dial("tcp", w.addr)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n",
		authority, authority, basicAuth("cordon", w.token))
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		w.t.Fatalf("CONNECT %s: %s", authority, res.Status)
	}
	if br.Buffered() > 0 {
		w.t.Fatal("data after the CONNECT response")
	}
	return conn
}

// connectStatus sends a CONNECT and returns the proxy's status and body.
func (w *world) connectStatus(authority string) (int, string) {
	w.t.Helper()
	conn, err := net.Dial("tcp", w.addr)
	if err != nil {
		w.t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n",
		authority, authority, basicAuth("cordon", w.token))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		w.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// tlsTunnel opens a tunnel and completes TLS with the given SNI, trusting
// cordon's CA.
func (w *world) tlsTunnel(authority, sni string, protos ...string) (*tls.Conn, error) {
	conn := w.tunnel(authority)
	roots := x509.NewCertPool()
	roots.AddCert(w.ca.Certificate())
	tc := tls.Client(conn, &tls.Config{ServerName: sni, RootCAs: roots, NextProtos: protos})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

func basicAuth(user, password string) string {
	return encodeBase64(user + ":" + password)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type netConn = net.Conn

func netDial(addr string) (net.Conn, error) { return net.Dial("tcp", addr) }
