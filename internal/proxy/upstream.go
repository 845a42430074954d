package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cordon-dev/cordon/internal/provider"
)

// upstreamKey selects a transport: connections are never shared between
// sandboxes (each sandbox's address checks admitted them), nor between
// sets of trusted roots.
type upstreamKey struct {
	sandbox string
	caCert  string // a provider's CA file, "" for the system roots
	// h2 lets the upstream leg speak HTTP/2. It follows the client's
	// protocol: Go's HTTP/1.1 client moves bulk bodies faster, and an
	// HTTP/1.1 client gains nothing from multiplexing upstream.
	h2 bool
}

// upstreams is the proxy's http.RoundTripper: one pooled transport per
// upstreamKey, each dialing only addresses the policy checked.
type upstreams struct {
	p *Proxy

	mu         sync.Mutex
	transports map[upstreamKey]*http.Transport
	pools      map[string]cachedPool
}

type cachedPool struct {
	pool    *x509.CertPool
	modTime time.Time
	size    int64
	checked time.Time // when the file was last compared with the pool
}

// poolRecheck is how often a provider's CA file is compared with the pool
// made from it: a changed file applies within this long.
const poolRecheck = time.Second

func newUpstreams(p *Proxy) *upstreams {
	return &upstreams{p: p, transports: map[upstreamKey]*http.Transport{}, pools: map[string]cachedPool{}}
}

// RoundTrip sends a request over the transport its exchange selected. A
// watchdog cuts the exchange when the upstream goes quiet: first while the
// response headers are awaited, then between reads of the body.
func (u *upstreams) RoundTrip(r *http.Request) (*http.Response, error) {
	x := r.Context().Value(exchangeKey{}).(*exchange)
	t, err := u.transport(*x.upstream)
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancelCause(r.Context())
	wd := &watchdog{cancel: cancel, headers: u.p.cfg.ResponseHeaderTimeout, idle: u.p.cfg.UpstreamIdleTimeout}
	// The wait for headers starts only once the request is sent, so the
	// timer is made stopped: a large upload takes the time it takes.
	wd.timer = time.AfterFunc(wd.headers, wd.fire)
	wd.timer.Stop()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) {
			if !wd.inBody.Load() {
				wd.timer.Reset(wd.headers)
			}
		},
	})

	res, err := t.RoundTrip(r.WithContext(ctx))
	if err != nil {
		wd.timer.Stop()
		var stall *StallError
		if cause := context.Cause(ctx); errors.As(cause, &stall) && r.Context().Err() == nil {
			err = stall
		}
		cancel(nil)
		return nil, err
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		// An upgraded connection may stay quiet as long as it likes, and
		// lives on the request's context until either side closes.
		wd.timer.Stop()
		return res, nil
	}
	wd.inBody.Store(true)
	wd.timer.Reset(wd.idle)
	res.Body = &watchedBody{ReadCloser: res.Body, wd: wd, ctx: ctx, x: x}
	return res, nil
}

// StallError is an upstream that went quiet: no response headers within
// Config.ResponseHeaderTimeout of the request being sent, or nothing of the
// body for Config.UpstreamIdleTimeout.
type StallError struct {
	Headers bool // still waiting for the response headers
	After   time.Duration
}

func (e *StallError) Error() string {
	if e.Headers {
		return "no response headers within " + e.After.String()
	}
	return "nothing received for " + e.After.String() + " in the middle of the response"
}

// watchdog cancels one exchange when its timer fires.
type watchdog struct {
	timer         *time.Timer
	cancel        context.CancelCauseFunc
	inBody        atomic.Bool
	headers, idle time.Duration
}

func (w *watchdog) fire() {
	if w.inBody.Load() {
		w.cancel(&StallError{After: w.idle})
		return
	}
	w.cancel(&StallError{Headers: true, After: w.headers})
}

// watchedBody is a response body under a watchdog: each read that brings
// data puts the deadline back. It notes why a read failed, for the audit
// event of a response cut short.
type watchedBody struct {
	io.ReadCloser
	wd  *watchdog
	ctx context.Context
	x   *exchange
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.wd.timer.Reset(b.wd.idle)
	}
	if err != nil && err != io.EOF {
		var stall *StallError
		switch {
		case errors.As(context.Cause(b.ctx), &stall):
			err = stall
			b.x.bodyErr = err
		case b.ctx.Err() == nil: // not the client leaving: the upstream failed
			b.x.bodyErr = err
		}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.wd.timer.Stop()
	err := b.ReadCloser.Close()
	b.wd.cancel(nil)
	return err
}

func (u *upstreams) transport(key upstreamKey) (*http.Transport, error) {
	roots, err := u.roots(key.caCert)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if t, ok := u.transports[key]; ok && t.TLSClientConfig.RootCAs == roots {
		return t, nil
	}
	if old, ok := u.transports[key]; ok {
		old.CloseIdleConnections() // the provider's CA file changed
	}
	sandbox := key.sandbox
	t := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := parseAuthority(addr, 0)
			if err != nil {
				return nil, err
			}
			return u.dial(ctx, sandbox, target{host: host, port: port})
		},
		TLSClientConfig: &tls.Config{
			RootCAs:            roots,
			MinVersion:         tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(256),
		},
		ForceAttemptHTTP2:     key.h2,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   u.p.cfg.HandshakeTimeout,
		ExpectContinueTimeout: time.Second,
		// Pass the client's Accept-Encoding through and its body back
		// untouched rather than negotiating compression of our own.
		DisableCompression: true,
		WriteBufferSize:    32 << 10,
		ReadBufferSize:     32 << 10,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
	if !key.h2 {
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	u.transports[key] = t
	return t, nil
}

// roots returns the pool upstream certificates are verified against: the
// configured roots (the system's by default), plus a provider's CA.
func (u *upstreams) roots(caCert string) (*x509.CertPool, error) {
	base := u.p.cfg.RootCAs
	if caCert == "" {
		return base, nil // nil means the system roots
	}
	now := time.Now()
	u.mu.Lock()
	cached, ok := u.pools[caCert]
	u.mu.Unlock()
	if ok && now.Sub(cached.checked) < poolRecheck {
		return cached.pool, nil
	}
	info, err := os.Stat(caCert)
	if err != nil {
		return nil, fmt.Errorf("reading the provider's CA certificate: %w", err)
	}
	if ok && cached.modTime.Equal(info.ModTime()) && cached.size == info.Size() {
		cached.checked = now
		u.mu.Lock()
		u.pools[caCert] = cached
		u.mu.Unlock()
		return cached.pool, nil
	}

	var pool *x509.CertPool
	if base != nil {
		pool = base.Clone()
	} else if pool, err = x509.SystemCertPool(); err != nil {
		pool = x509.NewCertPool()
	}
	// LoadCACert checks that the file holds certificates; CertPool has no
	// merge, so they are then appended to a copy of the base pool.
	if _, err := provider.LoadCACert(caCert); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(caCert)
	if err != nil {
		return nil, err
	}
	pool.AppendCertsFromPEM(data)

	u.mu.Lock()
	u.pools[caCert] = cachedPool{pool: pool, modTime: info.ModTime(), size: info.Size(), checked: now}
	u.mu.Unlock()
	return pool, nil
}

// closeIdle closes every pooled upstream connection that is idle.
func (u *upstreams) closeIdle() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, t := range u.transports {
		t.CloseIdleConnections()
	}
}

// BlockedError is an upstream address the policy refused.
type BlockedError struct {
	Host string
	Err  error
}

func (e *BlockedError) Error() string { return e.Err.Error() }
func (e *BlockedError) Unwrap() error { return e.Err }

// ResolveError is a name that did not resolve.
type ResolveError struct {
	Host string
	Err  error
}

func (e *ResolveError) Error() string {
	return "cannot resolve " + e.Host + ": " + e.Err.Error()
}
func (e *ResolveError) Unwrap() error { return e.Err }

// dial resolves t.host, checks every address against the policy, and
// connects to the addresses it checked, in order, until one answers. A
// name whose answers include a blocked address is refused outright: a
// resolver that mixes public and private answers is not trusted with the
// choice.
func (u *upstreams) dial(ctx context.Context, sandbox string, t target) (net.Conn, error) {
	p := u.p
	var addrs []netip.Addr
	if addr, err := netip.ParseAddr(t.host); err == nil {
		addrs = []netip.Addr{addr}
	} else if addr, ok := p.providerAddress(t); ok {
		addrs = []netip.Addr{addr}
	} else {
		lookupCtx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
		addrs, err = p.cfg.LookupNetIP(lookupCtx, t.host)
		cancel()
		if err != nil {
			return nil, &ResolveError{Host: t.host, Err: err}
		}
		if len(addrs) == 0 {
			return nil, &ResolveError{Host: t.host, Err: errors.New("no addresses")}
		}
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
		if p.cfg.Policy == nil {
			continue
		}
		if err := p.cfg.Policy.CheckAddress(sandbox, t.host, t.port, addrs[i]); err != nil {
			return nil, &BlockedError{Host: t.host, Err: err}
		}
	}

	dialer := net.Dialer{Timeout: p.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	var firstErr error
	for _, a := range addrs {
		conn, err := dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(t.port)).String())
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("connecting to %s: %w", net.JoinHostPort(t.host, strconv.Itoa(t.port)), firstErr)
}

// providerAddress is the address a provider pinned for the target with
// --resolve, if any.
func (p *Proxy) providerAddress(t target) (netip.Addr, bool) {
	set, err := p.cfg.Providers()
	if err != nil {
		return netip.Addr{}, false
	}
	return set.AddressFor(t.host, t.port)
}

// dialErrorStatus maps an upstream failure to the status the client gets
// and the audit decision.
func dialErrorStatus(err error) (int, string) {
	var blocked *BlockedError
	var stall *StallError
	switch {
	case errors.As(err, &blocked):
		return http.StatusForbidden, "deny"
	case errors.As(err, &stall):
		return http.StatusGatewayTimeout, "error"
	}
	return http.StatusBadGateway, "error"
}

// describeUpstreamError words an upstream failure for the client and the
// log: which host, and what went wrong.
func describeUpstreamError(t target, err error) string {
	var blocked *BlockedError
	var resolve *ResolveError
	var stall *StallError
	var unknownAuthority x509.UnknownAuthorityError
	var hostnameErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &blocked):
		return blocked.Error()
	case errors.As(err, &resolve):
		return resolve.Error()
	case errors.As(err, &stall):
		return "upstream " + t.authority() + " went quiet: " + stall.Error()
	case errors.As(err, &unknownAuthority):
		return "the certificate of " + t.host + " is signed by an authority cordon does not trust; " +
			"register the provider with --ca-cert if it uses a private CA"
	case errors.As(err, &hostnameErr):
		return "the certificate of " + t.host + " is not valid for that name: " + hostnameErr.Error()
	case errors.As(err, &invalid):
		return "the certificate of " + t.host + " is invalid: " + invalid.Error()
	case errors.As(err, &verify):
		return "the certificate of " + t.host + " failed verification: " + verify.Err.Error()
	}
	return "upstream " + t.authority() + " failed: " + err.Error()
}
