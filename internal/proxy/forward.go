package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/cordon-dev/cordon/internal/audit"
	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/secret"
)

// forwarder handles the requests for one destination: those inside one
// tunnel, or one absolute-form request.
type forwarder struct {
	p       *Proxy
	id      Identity
	target  target
	verdict Verdict

	tunnel      bool // inside a CONNECT: the Host header must agree
	intercepted bool // TLS terminated by cordon
	bypassed    bool // policy said bypass: forward, never inject
}

var _ http.Handler = (*forwarder)(nil)

// exchange is the state of one request on its way through, shared with
// the reverse proxy's callbacks through the request context.
type exchange struct {
	fw       *forwarder
	ev       audit.Event
	auth     provider.Auth
	secret   string
	forms    []string // the secret as it goes on the wire; never to come back
	inject   bool
	upstream *upstreamKey
	bodyErr  error // why reading the upstream's body failed, if it did
}

type exchangeKey struct{}

func (fw *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, t := fw.p, fw.target
	x := &exchange{fw: fw}
	x.ev = audit.Event{
		Time: time.Now(), Sandbox: fw.id.Sandbox, Method: r.Method, Scheme: t.scheme,
		Host: t.host, Port: t.port, Path: audit.RedactTarget(r.URL.EscapedPath(), r.URL.RawQuery),
		Intercepted: fw.intercepted, Decision: "allow", Rule: fw.verdict.Rule,
	}
	ev := &x.ev

	// Inside a tunnel the destination is the CONNECT authority; a request
	// that names another (Host, :authority or an absolute URL) is refused
	// rather than trusted.
	if fw.tunnel {
		if reason := fw.checkAuthority(r); reason != "" {
			p.refuse(w, ev, http.StatusMisdirectedRequest, "deny", reason)
			return
		}
	}

	if p.cfg.Policy != nil {
		v := p.cfg.Policy.Request(fw.id.Sandbox, t.host, t.port, r.Method, r.URL.EscapedPath())
		if v.Rule != "" {
			ev.Rule = v.Rule
		}
		if v.Action == Deny {
			p.refuse(w, ev, http.StatusForbidden, "deny", v.Reason)
			return
		}
	}

	// An h2c upgrade would turn the rest of the connection into HTTP/2
	// streams that the proxy no longer decides and records one by one.
	// Dropping the offer is allowed: the upstream answers in HTTP/1.1.
	if httpguts.HeaderValuesContainsToken(r.Header["Upgrade"], "h2c") {
		r.Header.Del("Upgrade")
		r.Header.Del("Http2-Settings")
	}

	set, err := p.cfg.Providers()
	if err != nil {
		p.refuse(w, ev, http.StatusBadGateway, "error", "cordon cannot read its providers: "+err.Error())
		return
	}
	snap, err := p.cfg.Secrets.Snapshot()
	if err != nil {
		p.refuse(w, ev, http.StatusBadGateway, "error", "cordon cannot read its secret store: "+err.Error())
		return
	}

	// A secret in the path would otherwise reach the log with it.
	ev.Path = maskStored(snap, ev.Path)

	match := set.Match(t.scheme, t.host, t.port, r.URL.EscapedPath())
	service := ""
	if match.Provider != nil && !fw.bypassed {
		service = match.Provider.Name
	}

	// The leak guard: a stored secret may travel only to its own
	// provider. Anything else carrying one is refused.
	if v, ok := findLeak(snap, r, service); ok {
		p.log.Warn("refused a request carrying another provider's secret",
			"sandbox", fw.id.Sandbox, "host", t.host, "services", v.Services)
		p.refuse(w, ev, http.StatusForbidden, "deny",
			"the request carries the stored secret of "+strings.Join(v.Services, ", ")+
				", which may only be sent to its own provider")
		return
	}

	switch {
	case fw.bypassed:
		ev.NoInject = "host bypassed"
	case match.Provider == nil:
		ev.NoInject = string(match.Reason)
		if match.Near != nil {
			ev.NoInject += " (" + match.Near.Name + ")"
		}
	default:
		entry, ok := snap.Lookup(fw.id.Sandbox, service)
		if !ok {
			ev.NoInject = "no secret for " + service + " in this scope"
			break
		}
		x.auth, x.secret, x.inject = match.Provider.Auth, entry.Value, true
		x.forms = x.auth.WireForms(x.secret)
		ev.Injected = service
	}

	x.upstream = &upstreamKey{sandbox: fw.id.Sandbox, caCert: set.CACertFor(t.scheme, t.host, t.port),
		h2: r.ProtoMajor == 2}
	var body *countingBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &countingBody{ReadCloser: r.Body}
		r.Body = body
		// The upstream may answer before the body's end reached the
		// proxy. By default an HTTP/1.1 server drains and closes the
		// request body when the response headers go out, which would
		// fail the upstream leg that is still reading it and cut the
		// response streaming back. Full duplex leaves it to that leg.
		if r.ProtoMajor == 1 {
			http.NewResponseController(w).EnableFullDuplex()
		}
	}
	rec := &recorder{ResponseWriter: w, ev: ev, forms: x.forms}
	r = r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x))

	// The reverse proxy abandons a response it cannot finish (the
	// upstream failed mid-body, or the client left) by panicking with
	// http.ErrAbortHandler, which the server recovers. The event is
	// recorded on the way out all the same.
	finished := false
	defer func() {
		if !finished {
			fw.cut(x)
		}
		if ev.Status == 0 && rec.status != 0 {
			ev.Status = rec.status
		}
		if body != nil {
			ev.BytesIn = body.n.Load()
		}
		ev.Duration = time.Since(ev.Time)
		p.record(ev)
	}()
	p.reverse.ServeHTTP(rec, r)
	finished = true
}

// cut records why a response was abandoned midway.
func (fw *forwarder) cut(x *exchange) {
	ev := &x.ev
	ev.Decision = "error"
	switch {
	case x.bodyErr != nil:
		ev.Reason = "the response was cut: " + describeUpstreamError(fw.target, x.bodyErr)
	case ev.Reason == "":
		ev.Reason = "the response was cut: the client went away"
	}
}

// checkAuthority compares the request's own idea of its destination with
// the tunnel's target and says what disagrees, or "" when nothing does.
func (fw *forwarder) checkAuthority(r *http.Request) string {
	t := fw.target
	defaultPort := 443
	if t.scheme == "http" {
		defaultPort = 80
	}
	if r.URL.Host != "" && r.URL.Host != r.Host {
		return "the request URL names " + strconv.Quote(r.URL.Host) + " inside a tunnel to " + t.authority()
	}
	if r.Host == "" {
		return "" // HTTP/1.0 without Host: the tunnel's target is implied
	}
	host, port, err := parseAuthority(r.Host, defaultPort)
	if err != nil || port != t.port || host != t.host && !(isLoopback(host) && isLoopback(t.host)) {
		return "Host " + strconv.Quote(r.Host) + " does not match the tunnel's destination " + t.authority()
	}
	return ""
}

// isLoopback reports whether a normalised host names the machine itself.
// localhost, 127.0.0.1 and ::1 are one destination, so a client that
// reached a loopback provider as one of them may name it as another (a
// sandbox carries both to the provider it bridges).
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.IsLoopback()
}

// findLeak looks for a stored secret that is not service's in the request's
// headers and target, in raw and percent-decoded form.
func findLeak(snap *secret.Snapshot, r *http.Request, service string) (secret.Value, bool) {
	if snap.Len() == 0 {
		return secret.Value{}, false
	}
	for _, values := range r.Header {
		for _, v := range values {
			if found, ok := snap.FindForeign(v, service); ok {
				return found, true
			}
		}
	}
	for _, s := range []string{r.URL.RawQuery, r.URL.EscapedPath()} {
		if found, ok := snap.FindForeign(s, service); ok {
			return found, true
		}
		if strings.ContainsAny(s, "%+") {
			if decoded, err := url.QueryUnescape(s); err == nil {
				if found, ok := snap.FindForeign(decoded, service); ok {
					return found, true
				}
			}
		}
	}
	return secret.Value{}, false
}

// maskStored replaces every stored secret value found in s with asterisks.
func maskStored(snap *secret.Snapshot, s string) string {
	if snap.Len() == 0 {
		return s
	}
	for {
		v, ok := snap.FindForeign(s, "")
		if !ok {
			return s
		}
		s = strings.ReplaceAll(s, v.Value, strings.Repeat("*", len(v.Value)))
	}
}

// newReverseProxy builds the reverse proxy every forwarder shares. The
// destination and credential of each request come from its exchange.
func (p *Proxy) newReverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			x := pr.In.Context().Value(exchangeKey{}).(*exchange)
			t := x.fw.target
			out := pr.Out
			out.URL.Scheme = t.scheme
			out.URL.Host = hostPort(t)
			out.Host = out.URL.Host
			if x.inject {
				out.URL.RawQuery = x.auth.Apply(out.Header, out.URL.RawQuery, x.secret)
				// An answer that carries the credential must come back
				// uncompressed for the redactor to find it: clients ask
				// for gzip or br by default, and an error page that
				// quotes the request would otherwise return the key
				// compressed. Identity is acceptable to every client.
				out.Header.Set("Accept-Encoding", "identity")
			}
		},
		ModifyResponse: func(res *http.Response) error {
			x := res.Request.Context().Value(exchangeKey{}).(*exchange)
			x.ev.Status = res.StatusCode
			if x.inject {
				redactResponse(res, x.forms)
			}
			return nil
		},
		Transport:    p.upstream,
		BufferPool:   bufferPool{},
		ErrorLog:     p.serverLog,
		ErrorHandler: p.upstreamError,
	}
}

// hostPort is the authority to send upstream, leaving out the default port.
func hostPort(t target) string {
	h := t.host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if t.scheme == "https" && t.port == 443 || t.scheme == "http" && t.port == 80 {
		return h
	}
	return h + ":" + strconv.Itoa(t.port)
}

// upstreamError answers a request that could not be carried upstream. The
// body says why; no credential went out on a connection that failed.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	x := r.Context().Value(exchangeKey{}).(*exchange)
	ev := &x.ev
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		ev.Decision, ev.Reason, ev.Status = "error", "client went away", 499
		return
	}
	status, decision := dialErrorStatus(err)
	reason := describeUpstreamError(x.fw.target, err)
	ev.Status, ev.Decision, ev.Reason = status, decision, reason
	if rec, ok := w.(*recorder); ok && rec.wrote {
		// The response had started; all that can be done is to cut it.
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, "cordon: "+reason+"\n")
	p.log.Debug("upstream failed", "host", x.fw.target.host, "err", err)
}

// record sends an event to the audit log and the logger.
func (p *Proxy) record(ev *audit.Event) {
	if ev.Decision != "allow" {
		p.maskRefusal(ev)
	}
	if p.cfg.Audit != nil {
		p.cfg.Audit.Record(*ev)
	}
	level := slog.LevelDebug
	switch ev.Decision {
	case "deny":
		level = slog.LevelInfo
	case "error":
		level = slog.LevelWarn
	}
	if !p.log.Enabled(context.Background(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("sandbox", ev.Sandbox), slog.String("method", ev.Method),
		slog.String("scheme", ev.Scheme), slog.String("host", ev.Host), slog.Int("port", ev.Port),
		slog.String("path", ev.Path), slog.Int("status", ev.Status),
		slog.Int64("bytes_in", ev.BytesIn), slog.Int64("bytes_out", ev.BytesOut),
		slog.Duration("duration", ev.Duration), slog.Bool("intercepted", ev.Intercepted),
		slog.String("decision", ev.Decision), slog.String("rule", ev.Rule),
	}
	if ev.Reason != "" {
		attrs = append(attrs, slog.String("reason", ev.Reason))
	}
	if ev.Injected != "" {
		attrs = append(attrs, slog.String("injected", ev.Injected))
	} else {
		attrs = append(attrs, slog.String("no_inject", ev.NoInject))
	}
	p.log.LogAttrs(context.Background(), level, "request", attrs...)
}

// maskRefusal masks stored secret values in what a refusal quotes of the
// client's request (its target, Host header or TLS server name), so that a
// client holding a secret cannot write it into the logs. Allowed requests
// were masked on their way through.
func (p *Proxy) maskRefusal(ev *audit.Event) {
	snap, err := p.cfg.Secrets.Snapshot()
	if err != nil || snap.Len() == 0 {
		return
	}
	ev.Host, ev.Path, ev.Reason = maskStored(snap, ev.Host), maskStored(snap, ev.Path), maskStored(snap, ev.Reason)
}

// recorder notes the status and counts the body bytes sent to the client.
type recorder struct {
	http.ResponseWriter
	ev     *audit.Event
	forms  []string // the injected credential's wire forms, masked in 1xx headers
	status int
	wrote  bool
}

func (r *recorder) WriteHeader(code int) {
	if code >= 200 && !r.wrote {
		r.status, r.wrote = code, true
	}
	// The reverse proxy relays informational responses (103 Early Hints)
	// straight from the upstream, without ModifyResponse.
	if code < 200 && len(r.forms) > 0 {
		maskHeader(r.Header(), r.forms)
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	n, err := r.ResponseWriter.Write(b)
	r.ev.BytesOut += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// countingBody counts the request body bytes read from the client. The
// transport reads it on its own goroutine, hence the atomic.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}
