package proxy

import (
	"bufio"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cordon-dev/cordon/internal/audit"
	"github.com/cordon-dev/cordon/internal/hostname"
)

// front serves the proxy's own listener: CONNECT requests and absolute-form
// plain-HTTP requests from one identity.
type front struct {
	p  *Proxy
	id Identity
}

var _ http.Handler = (*front)(nil)

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.id.Token != "" && !authorized(r.Header.Get("Proxy-Authorization"), f.id.Token) {
		f.p.log.Warn("proxy authentication failed", "remote", r.RemoteAddr, "method", r.Method)
		w.Header().Set("Proxy-Authenticate", `Basic realm="cordon"`)
		http.Error(w, "cordon: proxy authentication required", http.StatusProxyAuthRequired)
		return
	}
	switch {
	case r.Method == http.MethodConnect:
		f.connect(w, r)
	case r.URL.IsAbs():
		f.absolute(w, r)
	default:
		http.Error(w, "cordon: this is a forward proxy; send CONNECT or an absolute-form request",
			http.StatusBadRequest)
	}
}

// authorized checks a Proxy-Authorization value against the token in
// constant time. The user name must be "cordon".
func authorized(header, token string) bool {
	scheme, encoded, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return false
	}
	decoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
	if err != nil {
		return false
	}
	user, password, ok := strings.Cut(string(decoded), ":")
	if !ok || user != "cordon" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(password), []byte(token)) == 1
}

// target is where a connection or request really goes: the CONNECT
// authority, or the host of an absolute-form URL. Never a Host header.
type target struct {
	scheme string
	host   string // normalised
	port   int
}

// authority returns host:port as it goes on the wire.
func (t target) authority() string {
	return net.JoinHostPort(t.host, strconv.Itoa(t.port))
}

// parseAuthority reads "host:port" (port required when defaultPort is 0).
func parseAuthority(authority string, defaultPort int) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(authority)
	if err != nil {
		if defaultPort == 0 {
			return "", 0, fmt.Errorf("%q is not host:port", authority)
		}
		h, p = authority, strconv.Itoa(defaultPort)
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h = h[1 : len(h)-1]
		}
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("invalid port in %q", authority)
	}
	host, err = hostname.Normalize(h)
	if err != nil {
		return "", 0, err
	}
	return host, port, nil
}

// connect handles a CONNECT request: refuse, tunnel blind, or intercept.
func (f *front) connect(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ev := audit.Event{Time: start, Sandbox: f.id.Sandbox, Method: http.MethodConnect, Scheme: "https"}
	host, port, err := parseAuthority(r.Host, 0)
	if err != nil {
		ev.Host = r.Host
		f.p.refuse(w, &ev, http.StatusBadRequest, "error", "bad CONNECT target: "+err.Error())
		return
	}
	t := target{scheme: "https", host: host, port: port}
	ev.Host, ev.Port = host, port

	verdict := f.p.connectVerdict(f.id.Sandbox, t)
	ev.Rule = verdict.Rule
	switch verdict.Action {
	case Deny:
		f.p.refuse(w, &ev, http.StatusForbidden, "deny", verdict.Reason)
		return
	case Bypass:
		f.p.bypass(w, r, f.id, t, &ev, verdict)
		return
	}

	conn, err := hijack(w)
	if err != nil {
		f.p.log.Error("hijacking a CONNECT", "err", err)
		return
	}
	if !f.p.trackTunnel(conn) {
		conn.Close()
		return
	}
	f.p.intercept(conn, f.id, t, verdict)
}

// absolute handles an absolute-form request ("GET http://host/path"):
// plain HTTP from client to proxy, then http or https upstream.
func (f *front) absolute(w http.ResponseWriter, r *http.Request) {
	scheme := strings.ToLower(r.URL.Scheme)
	ev := audit.Event{Time: time.Now(), Sandbox: f.id.Sandbox, Method: r.Method, Scheme: scheme,
		Path: audit.RedactTarget(r.URL.EscapedPath(), r.URL.RawQuery)}
	if scheme != "http" && scheme != "https" {
		ev.Host = r.URL.Host
		f.p.refuse(w, &ev, http.StatusBadRequest, "error", "unsupported scheme "+strconv.Quote(scheme))
		return
	}
	defaultPort := 80
	if scheme == "https" {
		defaultPort = 443
	}
	host, port, err := parseAuthority(r.URL.Host, defaultPort)
	if err != nil {
		ev.Host = r.URL.Host
		f.p.refuse(w, &ev, http.StatusBadRequest, "error", "bad request target: "+err.Error())
		return
	}
	t := target{scheme: scheme, host: host, port: port}
	ev.Host, ev.Port = host, port

	verdict := f.p.connectVerdict(f.id.Sandbox, t)
	ev.Rule = verdict.Rule
	if verdict.Action == Deny {
		f.p.refuse(w, &ev, http.StatusForbidden, "deny", verdict.Reason)
		return
	}
	// A bypass rule means "do not look inside"; a plain-HTTP request is
	// already inside, so it is forwarded without a credential.
	fw := &forwarder{p: f.p, id: f.id, target: t, verdict: verdict, bypassed: verdict.Action == Bypass}
	fw.ServeHTTP(w, r)
}

// connectVerdict asks the policy about a destination; without a policy
// everything is allowed.
func (p *Proxy) connectVerdict(sandbox string, t target) Verdict {
	if p.cfg.Policy == nil {
		return Verdict{Action: Allow}
	}
	v := p.cfg.Policy.Connect(sandbox, t.host, t.port)
	if v.Action == Bypass {
		// A host that has a credential is never tunnelled blind: that
		// would silently lose injection.
		if set, err := p.cfg.Providers(); err == nil && set.HasHost(t.host) {
			v = Verdict{Action: Allow, Rule: v.Rule, Reason: "bypass ignored: a provider's credential is injected for this host"}
		}
	}
	return v
}

// refuse answers a request the proxy will not carry, and records why.
func (p *Proxy) refuse(w http.ResponseWriter, ev *audit.Event, status int, decision, reason string) {
	ev.Status, ev.Decision, ev.Reason = status, decision, reason
	ev.Duration = time.Since(ev.Time)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, "cordon: %s\n", reason)
	p.record(ev)
}

// hijack takes over the client connection of an HTTP/1.1 request, keeping
// any bytes the server had already buffered.
func hijack(w http.ResponseWriter) (net.Conn, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	if n := brw.Reader.Buffered(); n > 0 {
		return &prefixConn{Conn: conn, r: brw.Reader}, nil
	}
	return conn, nil
}

// prefixConn reads what a bufio.Reader still holds before reading from
// the connection itself.
type prefixConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(b)
		}
		c.r = nil
	}
	return c.Conn.Read(b)
}
