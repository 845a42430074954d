// Package proxy is cordon's forward proxy. It accepts CONNECT and
// absolute-form HTTP requests, decides each against the policy, terminates
// TLS with leaf certificates from cordon's CA, adds the stored credential of
// the provider a request is for, and streams the exchange in both
// directions. It knows nothing of sandboxes: each listener is handed an
// Identity, and everything is decided from that identity and the
// connection's real destination.
package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/cordon-dev/cordon/internal/audit"
	"github.com/cordon-dev/cordon/internal/ca"
	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/secret"
)

// Identity is who is asking on a listener.
type Identity struct {
	// Sandbox names the sandbox whose scoped secrets and rules apply; ""
	// is the global scope.
	Sandbox string
	// Token, when set, must arrive as Proxy-Authorization: Basic with user
	// "cordon" and this password. A listener that only one sandbox can
	// reach (its own Unix socket) needs none.
	Token string
}

// Action is a policy outcome.
type Action string

const (
	Allow  Action = "allow"
	Deny   Action = "deny"
	Bypass Action = "bypass" // tunnel without interception or injection
)

// Verdict is a policy decision with the reason a person can read.
type Verdict struct {
	Action Action
	Rule   string // the rule that decided, "" for a default
	Reason string
	// Deferred asks the proxy to intercept a CONNECT and decide each
	// request inside it with Policy.Request.
	Deferred bool
}

// Policy decides what a sandbox may reach. Implementations must be safe
// for concurrent use and cheap: Connect and CheckAddress run per
// connection, Request per intercepted request.
type Policy interface {
	Connect(sandbox, host string, port int) Verdict
	Request(sandbox, host string, port int, method, path string) Verdict
	// CheckAddress returns an error when addr, which host resolved to,
	// lies in a blocked range that no rule names exactly.
	CheckAddress(sandbox, host string, port int, addr netip.Addr) error
}

// Recorder receives one audit event per request. Record must not block.
type Recorder interface {
	Record(audit.Event)
}

// Config is what a Proxy is built from. CA, Providers and Secrets are
// required.
type Config struct {
	CA *ca.CA
	// Providers returns the current providers; it is called per request,
	// so a provider registered while the proxy runs applies at once.
	Providers func() (*provider.Set, error)
	Secrets   secret.Store
	// Policy decides what may be reached. Nil allows every destination,
	// which is only meant for tests of the proxy alone.
	Policy Policy
	// Audit receives the request log. Nil logs through Logger only.
	Audit Recorder
	// Logger receives the proxy's own messages and, at debug level, one
	// line per request. Nil discards them.
	Logger *slog.Logger

	// LookupNetIP resolves host names; nil uses net.DefaultResolver.
	LookupNetIP func(ctx context.Context, host string) ([]netip.Addr, error)
	// RootCAs are the roots upstream certificates are verified against,
	// in addition to a provider's own CA. Nil uses the system roots.
	RootCAs *x509.CertPool

	// Timeouts and limits; zero values pick the defaults below.
	HandshakeTimeout time.Duration // client and upstream TLS handshakes, a tunnel's first byte
	IdleTimeout      time.Duration // idle client connections
	DialTimeout      time.Duration // upstream TCP connects
	// ReadHeaderTimeout bounds the reading of a client's request line and
	// headers, however slowly they trickle in.
	ReadHeaderTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an upstream's response
	// headers once the request has been sent. A model may think for
	// minutes before its first byte, hence the generous default.
	ResponseHeaderTimeout time.Duration
	// UpstreamIdleTimeout cuts a response whose body has sent nothing for
	// this long. Streams that send events or keep-alive comments never
	// reach it; WebSockets are not subject to it.
	UpstreamIdleTimeout time.Duration
	// MaxConns is how many client connections one sandbox may hold open
	// at once, across all the listeners served for it. A connection past
	// the limit is answered 503 and closed, and the refusal recorded.
	MaxConns int
}

const (
	defaultHandshakeTimeout      = 15 * time.Second
	defaultIdleTimeout           = 2 * time.Minute
	defaultDialTimeout           = 15 * time.Second
	defaultReadHeaderTimeout     = 30 * time.Second
	defaultResponseHeaderTimeout = 10 * time.Minute
	defaultUpstreamIdleTimeout   = 5 * time.Minute
	defaultMaxConns              = 512
	maxHeaderBytes               = 64 << 10
)

// Proxy serves listeners. It is safe for concurrent use.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	upstream  *upstreams
	tlsConfig *tls.Config
	reverse   *httputil.ReverseProxy
	h2        *http2.Server
	h2base    *http.Server
	h1        *tunnelServer // HTTP/1.1 inside every tunnel
	serverLog *log.Logger

	mu        sync.Mutex
	servers   map[*http.Server]struct{}
	tunnels   map[net.Conn]struct{}
	listeners map[net.Listener]struct{}
	conns     map[string]*connCount // by sandbox
	refusing  chan struct{}         // bounds the goroutines answering refused connections
	shutdown  bool
	wg        sync.WaitGroup
}

// New checks cfg and builds a proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.CA == nil || cfg.Providers == nil || cfg.Secrets == nil {
		return nil, errors.New("proxy: CA, Providers and Secrets are required")
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = defaultIdleTimeout
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = defaultReadHeaderTimeout
	}
	if cfg.ResponseHeaderTimeout == 0 {
		cfg.ResponseHeaderTimeout = defaultResponseHeaderTimeout
	}
	if cfg.UpstreamIdleTimeout == 0 {
		cfg.UpstreamIdleTimeout = defaultUpstreamIdleTimeout
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = defaultMaxConns
	}
	if cfg.LookupNetIP == nil {
		cfg.LookupNetIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	p := &Proxy{
		cfg:       cfg,
		log:       logger,
		servers:   map[*http.Server]struct{}{},
		tunnels:   map[net.Conn]struct{}{},
		listeners: map[net.Listener]struct{}{},
		conns:     map[string]*connCount{},
		refusing:  make(chan struct{}, 64),
	}
	p.upstream = newUpstreams(p)
	p.tlsConfig = p.serverTLSConfig()
	p.serverLog = slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	p.reverse = p.newReverseProxy()

	// The HTTP/2 server for intercepted connections hangs off a base
	// http.Server so that Shutdown can send GOAWAY to all of them, and
	// so that it bounds header lists as the HTTP/1.1 servers do.
	p.h2base = &http.Server{IdleTimeout: cfg.IdleTimeout, MaxHeaderBytes: maxHeaderBytes, ErrorLog: p.serverLog}
	p.h2 = &http2.Server{
		IdleTimeout:          cfg.IdleTimeout,
		MaxConcurrentStreams: 250,
		MaxReadFrameSize:     1 << 20,
	}
	if err := http2.ConfigureServer(p.h2base, p.h2); err != nil {
		return nil, err
	}
	p.h1 = newTunnelServer(p)
	return p, nil
}

// Serve accepts connections on l and serves them as id until l is closed or
// the proxy shuts down. It always returns a non-nil error; after Shutdown,
// http.ErrServerClosed. At most Config.MaxConns connections of id's sandbox
// are open at once, counted over every listener served for that sandbox.
func (p *Proxy) Serve(l net.Listener, id Identity) error {
	l = &limitListener{Listener: l, p: p, id: id, count: p.connCount(id.Sandbox)}
	srv := &http.Server{
		Handler:           &front{p: p, id: id},
		ReadHeaderTimeout: p.cfg.ReadHeaderTimeout,
		IdleTimeout:       p.cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          p.serverLog,
	}
	if !p.track(srv) {
		return http.ErrServerClosed
	}
	defer p.untrack(srv)
	return srv.Serve(l)
}

func (p *Proxy) track(srv *http.Server) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shutdown {
		return false
	}
	p.servers[srv] = struct{}{}
	return true
}

func (p *Proxy) untrack(srv *http.Server) {
	p.mu.Lock()
	delete(p.servers, srv)
	p.mu.Unlock()
}

// trackTunnel registers a hijacked client connection so that Shutdown can
// close it; it returns false when the proxy is shutting down.
func (p *Proxy) trackTunnel(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shutdown {
		return false
	}
	p.tunnels[c] = struct{}{}
	p.wg.Add(1)
	return true
}

func (p *Proxy) untrackTunnel(c net.Conn) {
	p.mu.Lock()
	if _, ok := p.tunnels[c]; ok {
		delete(p.tunnels, c)
		p.wg.Done()
	}
	p.mu.Unlock()
}

// Shutdown stops accepting connections, lets requests in flight finish
// until ctx is done, and then closes whatever is left.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.shutdown = true
	servers := make([]*http.Server, 0, len(p.servers))
	for s := range p.servers {
		servers = append(servers, s)
	}
	p.mu.Unlock()

	// Closing the front servers stops new CONNECTs; HTTP/2 tunnels get
	// GOAWAY; idle HTTP/1.1 tunnels are closed, busy ones after their response.
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() { s.Shutdown(ctx) })
	}
	p.h1.shutdown()
	p.h2base.Shutdown(ctx)

	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		wg.Wait()
		close(done)
	}()

	select {
	case <-done:
		p.upstream.closeIdle()
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		for c := range p.tunnels {
			c.Close()
		}
		p.mu.Unlock()
		for _, s := range servers {
			s.Close()
		}
		p.upstream.closeIdle()
		return ctx.Err()
	}
}
