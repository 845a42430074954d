package proxy

// Credential exfiltration attempts against a running proxy. Each test
// plays a client that wants the stored secret of the provider "llm" to
// reach somewhere else, or to come back to it, and checks that it does not.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/secret"
)

// attackWorld is a proxy with one provider, "llm", whose secret is stored,
// and a second host, "evil", that an attacker wants the secret sent to.
type attackWorld struct {
	*world
	pki       *testPKI
	llm, evil *upstream
	llmAuth   string // llm.test:port
	evilAuth  string // evil.test:port
}

func newAttackWorld(t *testing.T, h2 bool) *attackWorld {
	t.Helper()
	a := &attackWorld{world: newWorld(t, worldOptions{}), pki: newTestPKI(t)}
	a.llm = startUpstream(t, a.pki, h2, echoHeaders, "llm.test")
	a.evil = startUpstream(t, a.pki, h2, echoHeaders, "evil.test")
	a.llmAuth = fmt.Sprintf("llm.test:%d", a.llm.port)
	a.evilAuth = fmt.Sprintf("evil.test:%d", a.evil.port)
	a.addProvider(provider.Spec{Name: "llm", BaseURL: "https://" + a.llmAuth + "/v1", CACert: a.pki.pemPath})
	// evil.test is trusted (a provider without a secret) so that a request
	// the proxy lets through really arrives and can be inspected.
	a.addProvider(provider.Spec{Name: "evil", BaseURL: "https://" + a.evilAuth + "/none", CACert: a.pki.pemPath})
	a.setSecret(secret.Global(), "llm", theSecret)
	return a
}

// checkNoLeak fails the test if any request that reached an upstream
// carried the secret anywhere but to llm under /v1, or if the secret is in
// the proxy's log or audit events.
func (a *attackWorld) checkNoLeak(t *testing.T) {
	t.Helper()
	for _, r := range a.evil.received() {
		if s := dumpRequest(r); strings.Contains(s, theSecret) {
			t.Errorf("the secret reached evil.test: %s", s)
		}
	}
	for _, r := range a.llm.received() {
		if s := dumpRequest(r); strings.Contains(s, theSecret) && !strings.HasPrefix(r.URL.Path, "/v1/") {
			t.Errorf("the secret reached llm.test outside /v1: %s", s)
		}
	}
	if strings.Contains(a.logs.String(), theSecret) {
		t.Error("the secret is in the proxy's log")
	}
	for _, ev := range a.events.list() {
		if strings.Contains(fmt.Sprintf("%+v", ev), theSecret) {
			t.Errorf("the secret is in an audit event: %+v", ev)
		}
	}
}

func dumpRequest(r *http.Request) string {
	return fmt.Sprintf("%s %s host=%s header=%v", r.Method, r.URL, r.Host, r.Header)
}

// rawTLS opens an intercepted tunnel to authority and completes TLS with
// the given SNI and ALPN protocols.
func (a *attackWorld) rawTLS(t *testing.T, authority, sni string, protos ...string) *tls.Conn {
	t.Helper()
	tc, err := a.tlsTunnel(authority, sni, protos...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	return tc
}

// h2conn is a hand-driven HTTP/2 client connection, for requests that a
// well-behaved client library would refuse to send.
type h2conn struct {
	t   *testing.T
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
	dec *hpack.Decoder
	id  uint32
}

func newH2Conn(t *testing.T, c net.Conn) *h2conn {
	t.Helper()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	h := &h2conn{t: t, fr: http2.NewFramer(c, c), dec: hpack.NewDecoder(4096, nil), id: 1}
	h.enc = hpack.NewEncoder(&h.buf)
	h.fr.ReadMetaHeaders = h.dec
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

// request sends one HEADERS frame built from name/value pairs, in order and
// without validation, and returns the stream's status: the :status of the
// response, or -1 when the server reset the stream or the connection.
func (h *h2conn) request(fields ...string) (status int, body string) {
	h.t.Helper()
	h.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	id := h.id
	h.id += 2
	err := h.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: id, BlockFragment: h.buf.Bytes(), EndStream: true, EndHeaders: true,
	})
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		// The server closed the connection while the request was still
		// on its way: it refused it.
		return -1, ""
	}
	if err != nil {
		h.t.Fatal(err)
	}
	status = 0
	var b strings.Builder
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return -1, b.String()
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				h.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			return -1, b.String()
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return -1, b.String()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID != id {
				continue
			}
			if s := f.PseudoValue("status"); s != "" && status == 0 {
				status, _ = strconv.Atoi(s)
				if status < 200 {
					status = 0 // informational: wait for the final one
				}
			}
			if f.StreamEnded() {
				return status, b.String()
			}
		case *http2.DataFrame:
			if f.StreamID != id {
				continue
			}
			b.Write(f.Data())
			if len(f.Data()) > 0 {
				h.fr.WriteWindowUpdate(0, uint32(len(f.Data())))
				h.fr.WriteWindowUpdate(id, uint32(len(f.Data())))
			}
			if f.StreamEnded() {
				return status, b.String()
			}
		}
	}
}

// TestHTTP2AuthoritySpoofing sends HTTP/2 requests whose pseudo-headers
// name the provider, or are malformed, inside a tunnel to another host.
// None may reach the provider or carry its secret.
func TestHTTP2AuthoritySpoofing(t *testing.T) {
	a := newAttackWorld(t, true)
	get := func(authority, path string, extra ...string) []string {
		f := []string{":method", "GET", ":scheme", "https"}
		if authority != "" {
			f = append(f, ":authority", authority)
		}
		f = append(f, ":path", path)
		return append(f, extra...)
	}
	tests := []struct {
		name   string
		fields []string
		// ok lists the statuses that count as a refusal or a harmless
		// answer; -1 is a reset stream.
		ok []int
	}{
		{"authority names the provider", get(a.llmAuth, "/v1/models"), []int{421}},
		{"authority names the provider without port", get("llm.test", "/v1/models"), []int{421}},
		{"authority with a trailing dot", get("llm.test.:"+strconv.Itoa(a.llm.port), "/v1/models"), []int{421}},
		{"authority with user info", get("x@"+a.llmAuth, "/v1/models"), []int{421, 400, -1}},
		{"Host header instead of authority", get("", "/v1/models", "host", a.llmAuth), []int{421}},
		{"Host header disagreeing with authority", get(a.evilAuth, "/v1/models", "host", a.llmAuth), []int{200, 421, 400, -1}},
		{"two authorities", append(get(a.evilAuth, "/v1/models"), ":authority", a.llmAuth), []int{400, 421, -1}},
		{"absolute path", get(a.evilAuth, "https://"+a.llmAuth+"/v1/models"), []int{400, 421, -1}},
		{"scheme http", []string{":method", "GET", ":scheme", "http", ":authority", a.llmAuth, ":path", "/v1/models"}, []int{421}},
		{"CONNECT to the provider", []string{":method", "CONNECT", ":authority", a.llmAuth}, []int{421, 400, 405, -1}},
		{"extended CONNECT to the provider", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "https",
			":authority", a.llmAuth, ":path", "/v1/ws"}, []int{421, 400, -1}},
		{"pseudo-header after a regular one", []string{":method", "GET", "x-a", "1", ":scheme", "https",
			":authority", a.llmAuth, ":path", "/v1/models"}, []int{400, 421, -1}},
		{"unknown pseudo-header", append(get(a.evilAuth, "/v1/models"), ":host", a.llmAuth), []int{400, -1}},
		{"authority with CR LF", get(a.evilAuth+"\r\nhost: "+a.llmAuth, "/v1/models"), []int{400, 421, -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := a.rawTLS(t, a.evilAuth, "evil.test", "h2")
			if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
				t.Fatalf("negotiated %q, want h2", p)
			}
			h := newH2Conn(t, tc)
			status, body := h.request(tt.fields...)
			found := false
			for _, s := range tt.ok {
				found = found || s == status
			}
			if !found {
				t.Errorf("status %d (%q), want one of %v", status, body, tt.ok)
			}
			if strings.Contains(body, theSecret) {
				t.Errorf("the secret came back: %q", body)
			}
		})
	}
	if n := len(a.llm.received()); n != 0 {
		t.Errorf("llm.test received %d requests through a tunnel to evil.test", n)
	}
	for _, r := range a.evil.received() {
		if r.Host != a.evilAuth {
			t.Errorf("evil.test received a request for Host %q", r.Host)
		}
	}
	a.checkNoLeak(t)
}

// rawExchange writes raw bytes into an intercepted HTTP/1.1 tunnel and
// reads every response until the proxy closes the connection. The last
// request should say "Connection: close"; a proxy that waits for more
// is cut after five seconds.
func rawExchange(t *testing.T, c net.Conn, raw string) []*http.Response {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	var out []*http.Response
	for {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		res.Body = io.NopCloser(bytes.NewReader(body))
		out = append(out, res)
	}
}

// TestRequestSmuggling sends requests with ambiguous framing inside an
// intercepted tunnel to the provider. The proxy parses each request and
// sends it on framed anew, so whatever it makes of the bytes, the upstream
// must receive exactly the requests the proxy decided on and recorded,
// nothing hidden in a body, and only for the tunnel's host.
func TestRequestSmuggling(t *testing.T) {
	t.Parallel()
	a := newAttackWorld(t, false)
	hidden := "GET /smuggled HTTP/1.1\r\nHost: " + a.llmAuth + "\r\n\r\n"
	hiddenEvil := "GET /smuggled HTTP/1.1\r\nHost: " + a.evilAuth + "\r\n\r\n"
	host := "Host: " + a.llmAuth + "\r\n"
	// Every exchange ends with this request; a parser that lost its place
	// would swallow it or read it as something else.
	last := "GET /v1/last HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n"
	tests := []struct {
		name string
		raw  string
	}{
		{"two Content-Lengths", "POST /v1/a HTTP/1.1\r\n" + host + "Content-Length: 0\r\nContent-Length: " +
			strconv.Itoa(len(hidden)) + "\r\n\r\n" + hidden},
		{"Content-Length and Transfer-Encoding", "POST /v1/a HTTP/1.1\r\n" + host + "Content-Length: " +
			strconv.Itoa(len(hidden)+5) + "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden},
		{"Transfer-Encoding and Content-Length", "POST /v1/a HTTP/1.1\r\n" + host +
			"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n" + hiddenEvil},
		{"Transfer-Encoding with identity", "POST /v1/a HTTP/1.1\r\n" + host +
			"Transfer-Encoding: chunked, identity\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + hidden},
		{"Transfer-Encoding padded", "POST /v1/a HTTP/1.1\r\n" + host +
			"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + hidden},
		{"Transfer-Encoding obfuscated", "POST /v1/a HTTP/1.1\r\n" + host +
			"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + hidden},
		{"obsolete line folding", "GET /v1/a HTTP/1.1\r\n" + host + "X-Fold: a\r\n Host: evil.test\r\n\r\n"},
		{"folded Content-Length", "POST /v1/a HTTP/1.1\r\n" + host + "Content-Length: 0\r\n " +
			strconv.Itoa(len(hidden)) + "\r\n\r\n" + hidden},
		{"bare CR in a header value", "GET /v1/a HTTP/1.1\r\n" + host + "X-A: a\rHost: evil.test\r\n\r\n"},
		{"bare LF in a header value", "GET /v1/a HTTP/1.1\r\n" + host + "X-A: a\nHost: evil.test\r\n\r\n"},
		{"NUL in a header value", "GET /v1/a HTTP/1.1\r\n" + host + "X-A: a\x00b\r\n\r\n"},
		{"bare LF line endings", "GET /v1/a HTTP/1.1\n" + host + "\n" + hiddenEvil},
		{"chunk size overflow", "POST /v1/a HTTP/1.1\r\n" + host +
			"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nx\r\n0\r\n\r\n" + hidden},
		{"chunk extension smuggling", "POST /v1/a HTTP/1.1\r\n" + host +
			"Transfer-Encoding: chunked\r\n\r\n2;x=\"\r\n\"\r\nab\r\n0\r\n\r\n" + hidden},
		{"pipelined request to another host", "GET /v1/a HTTP/1.1\r\n" + host + "\r\n" + hiddenEvil},
		{"oversized header", "GET /v1/a HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 80<<10) + "\r\n\r\n" + hidden},
		{"many headers", "GET /v1/a HTTP/1.1\r\n" + host + strings.Repeat("X-Many: a\r\n", 10000) + "\r\n" + hidden},
		{"HTTP/1.0 without Host", "GET /v1/a HTTP/1.0\r\n\r\n" + hiddenEvil},
		{"two Hosts", "GET /v1/a HTTP/1.1\r\n" + host + "Host: evil.test\r\n\r\n"},
		{"Upgrade to h2c", "GET /v1/a HTTP/1.1\r\n" + host + "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" +
			"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n" + hidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, eventsBefore := len(a.llm.received()), len(a.events.list())
			tc := a.rawTLS(t, a.llmAuth, "llm.test")
			responses := rawExchange(t, tc, tt.raw+last)
			for _, res := range responses {
				body, _ := io.ReadAll(res.Body)
				if strings.Contains(string(body), theSecret) {
					t.Errorf("the secret came back: %s", body)
				}
			}
			// The proxy's handler may still be recording the last event
			// when the client has read its response.
			time.Sleep(20 * time.Millisecond)
			var received, decided []string
			for _, r := range a.llm.received()[before:] {
				received = append(received, r.Method+" "+r.URL.Path)
				if r.Host != a.llmAuth {
					t.Errorf("upstream request for Host %q", r.Host)
				}
				if r.Header.Get("Upgrade") != "" || r.Header.Get("Http2-Settings") != "" {
					t.Errorf("upstream received an upgrade: %v", r.Header)
				}
			}
			for _, ev := range a.events.list()[eventsBefore:] {
				// An error is a request the proxy sent on that then
				// failed, such as one whose body turned out malformed.
				if ev.Decision == "allow" || ev.Decision == "error" {
					decided = append(decided, ev.Method+" "+ev.Path)
				}
			}
			if strings.Join(received, ",") != strings.Join(decided, ",") {
				t.Errorf("the upstream received %q, the proxy decided on %q", received, decided)
			}
			t.Logf("%d responses; upstream received %q", len(responses), received)
		})
	}
	if n := len(a.evil.received()); n != 0 {
		t.Errorf("evil.test received %d requests", n)
	}
	a.checkNoLeak(t)
}

// TestProxyTokenNotForwarded checks that the proxy's own credential, sent
// by a client as Proxy-Authorization, never reaches an upstream.
func TestProxyTokenNotForwarded(t *testing.T) {
	w := newWorld(t, worldOptions{})
	plain := startPlain(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "%v", r.Header)
	}))
	c := dialRaw(t, w.addr)
	fmt.Fprintf(c, "GET http://plain.test:%d/x HTTP/1.1\r\nHost: plain.test:%d\r\nProxy-Authorization: Basic %s\r\n"+
		"Connection: close\r\n\r\n", plain.port, plain.port, basicAuth("cordon", w.token))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("%s: %s", res.Status, body)
	}
	r := plain.last()
	if r == nil {
		t.Fatal("the upstream got nothing")
	}
	if r.Header.Get("Proxy-Authorization") != "" || strings.Contains(string(body), w.token) {
		t.Errorf("the proxy token reached the upstream: %v", r.Header)
	}
}

// TestPlainHTTPInsideTunnel speaks plain HTTP inside a CONNECT to an https
// provider: the request is http, so no credential may go with it.
func TestPlainHTTPInsideTunnel(t *testing.T) {
	w := newWorld(t, worldOptions{})
	plain := startPlain(t, echoHeaders)
	authority := fmt.Sprintf("down.test:%d", plain.port)
	w.addProvider(provider.Spec{Name: "down", BaseURL: "https://" + authority + "/v1"})
	w.setSecret(secret.Global(), "down", theSecret)

	c := w.tunnel(authority)
	responses := rawExchange(t, c, "GET /v1/models HTTP/1.1\r\nHost: "+authority+"\r\nConnection: close\r\n\r\n")
	if len(responses) != 1 {
		t.Fatalf("%d responses", len(responses))
	}
	body, _ := io.ReadAll(responses[0].Body)
	if strings.Contains(string(body), "Bearer") {
		t.Errorf("plain HTTP inside a tunnel got a credential: %s", body)
	}
	if r := plain.last(); r != nil && r.Header.Get("Authorization") != "" {
		t.Errorf("upstream received Authorization %q", r.Header.Get("Authorization"))
	}
}

// TestWebSocketToAnotherHost tries to upgrade, inside a tunnel to one host,
// a connection that names the other.
func TestWebSocketToAnotherHost(t *testing.T) {
	a := newAttackWorld(t, false)
	upgrade := func(host string) string {
		return "GET /v1/ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" +
			"GET /v1/last HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"
	}
	for _, tt := range []struct{ tunnel, sni, host string }{
		{a.evilAuth, "evil.test", a.llmAuth},
		{a.llmAuth, "llm.test", a.evilAuth},
	} {
		tc := a.rawTLS(t, tt.tunnel, tt.sni)
		responses := rawExchange(t, tc, upgrade(tt.host))
		if len(responses) == 0 || responses[0].StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("upgrade for %s in a tunnel to %s: %v", tt.host, tt.tunnel, responses)
		}
	}
	if n := len(a.llm.received()) + len(a.evil.received()); n != 0 {
		t.Errorf("upstreams received %d requests", n)
	}
	a.checkNoLeak(t)
}

// echoEverything answers with the request's headers in the response's
// headers, body and trailers, and in a 103 Early Hints before them.
var echoEverything = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	var all []string
	for name, values := range r.Header {
		for _, v := range values {
			all = append(all, name+": "+v)
		}
	}
	all = append(all, "query: "+r.URL.RawQuery)
	joined := strings.Join(all, "\n")
	if r.URL.Query().Get("hints") != "" {
		for i, line := range all {
			w.Header().Add("Link", fmt.Sprintf("</%d>; rel=preload; x=%q", i, line))
		}
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
	}
	w.Header().Set("Trailer", "X-Echo-Trailer")
	for i, line := range all {
		w.Header().Add("X-Echo-"+strconv.Itoa(i), line)
	}
	if r.URL.Query().Get("length") != "" {
		w.Header().Set("Content-Length", strconv.Itoa(len(joined)))
	}
	// Byte by byte, so that every split of the secret is tried.
	if r.URL.Query().Get("split") != "" {
		for i := range len(joined) {
			io.WriteString(w, joined[i:i+1])
			w.(http.Flusher).Flush()
		}
	} else {
		io.WriteString(w, joined)
	}
	// A header value cannot hold a line break.
	w.Header().Set("X-Echo-Trailer", strings.Join(all, "; "))
})

// TestEchoedCredentialNeverReturns has the provider echo everything it
// received, in each way a response can carry it, over HTTP/1.1 and HTTP/2
// and for each way a credential is injected. The client must see neither
// the secret nor the injected value that encodes it.
func TestEchoedCredentialNeverReturns(t *testing.T) {
	pki := newTestPKI(t)
	auths := []struct {
		name  string
		spec  provider.Spec
		value string
	}{
		{"bearer", provider.Spec{}, theSecret},
		{"raw header", provider.Spec{Header: "x-api-key:"}, theSecret},
		{"basic", provider.Spec{Basic: true}, "alice:" + theSecret},
		{"query", provider.Spec{QueryParam: "key"}, theSecret + "/+="},
	}
	for _, h2 := range []bool{false, true} {
		for _, auth := range auths {
			t.Run(fmt.Sprintf("%s h2=%v", auth.name, h2), func(t *testing.T) {
				w := newWorld(t, worldOptions{})
				up := startUpstream(t, pki, h2, echoEverything, "llm.test")
				spec := auth.spec
				spec.Name, spec.CACert = "llm", pki.pemPath
				spec.BaseURL = fmt.Sprintf("https://llm.test:%d/v1", up.port)
				w.addProvider(spec)
				w.setSecret(secret.Global(), "llm", auth.value)
				// What a client could decode the secret from.
				forms := []string{theSecret, auth.value, base64.StdEncoding.EncodeToString([]byte(auth.value)),
					url.QueryEscape(auth.value)}

				for _, query := range []string{"", "length=1", "split=1", "hints=1"} {
					res, err := w.client(h2).Get(fmt.Sprintf("https://llm.test:%d/v1/echo?%s", up.port, query))
					if err != nil {
						t.Fatal(err)
					}
					body, err := io.ReadAll(res.Body)
					res.Body.Close()
					if err != nil {
						t.Fatalf("%s: %v", query, err)
					}
					seen := fmt.Sprintf("%v %v %s", res.Header, res.Trailer, body)
					if !strings.Contains(seen, "Accept-Encoding") {
						t.Fatalf("%s: the echo is missing: %s", query, seen)
					}
					for _, form := range forms {
						if strings.Contains(seen, form) {
							t.Errorf("%s: the client saw %q in %s", query, form, seen)
						}
					}
				}
				// The early hints went to the client's transport; look at
				// them as a raw client would.
				if !h2 {
					tc, err := w.tlsTunnel(fmt.Sprintf("llm.test:%d", up.port), "llm.test")
					if err != nil {
						t.Fatal(err)
					}
					defer tc.Close()
					fmt.Fprintf(tc, "GET /v1/echo?hints=1 HTTP/1.1\r\nHost: llm.test:%d\r\nConnection: close\r\n\r\n", up.port)
					tc.SetReadDeadline(time.Now().Add(5 * time.Second))
					raw, _ := io.ReadAll(tc)
					if !bytes.Contains(raw, []byte("103 Early Hints")) {
						t.Errorf("no early hints in %q", raw)
					}
					for _, form := range forms {
						if bytes.Contains(raw, []byte(form)) {
							t.Errorf("raw response carries %q", form)
						}
					}
				}
			})
		}
	}
}

// TestWebSocketEchoedCredential has the provider accept a WebSocket upgrade
// and write the request's credential into the upgraded stream.
func TestWebSocketEchoedCredential(t *testing.T) {
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{})
	up := startUpstream(t, pki, false, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(rw).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		auth := r.Header.Get("Authorization")
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"X-Echo: %s\r\n\r\n", auth)
		// Split over two writes so that a redactor must hold a tail.
		brw.WriteString(auth[:10])
		brw.Flush()
		time.Sleep(20 * time.Millisecond)
		brw.WriteString(auth[10:] + "\n")
		brw.Flush()
		io.Copy(io.Discard, brw)
	}), "llm.test")
	authority := fmt.Sprintf("llm.test:%d", up.port)
	w.addProvider(provider.Spec{Name: "llm", BaseURL: "https://" + authority + "/v1", CACert: pki.pemPath})
	w.setSecret(secret.Global(), "llm", theSecret)

	tc, err := w.tlsTunnel(authority, "llm.test")
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	fmt.Fprintf(tc, "GET /v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", authority)
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(tc)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %s", res.Status)
	}
	if got := res.Header.Get("X-Echo"); got == "" || strings.Contains(got, theSecret) {
		t.Errorf("the 101 response's echo header is %q", got)
	}
	if got := up.last().Header.Get("Authorization"); got != "Bearer "+theSecret {
		t.Errorf("upstream Authorization %q", got)
	}
	line, _ := br.ReadString('\n')
	if !strings.Contains(line, "Bearer ") {
		t.Errorf("the upgraded stream lost its data: %q", line)
	}
	t.Run("stream", func(t *testing.T) {
		if strings.Contains(line, theSecret) {
			t.Skip("known gap: the stream after 101 Switching Protocols is not redacted " +
				"(a redactor would hold back a frame's last bytes, and permessage-deflate defeats it)")
		}
	})
}

// denyByName refuses every host whose name contains "denied".
type denyByName struct{}

func (denyByName) Connect(sandbox, host string, port int) Verdict {
	if strings.Contains(host, "denied") {
		return Verdict{Action: Deny, Reason: "no rule allows " + host}
	}
	return Verdict{Action: Allow}
}

func (denyByName) Request(sandbox, host string, port int, method, path string) Verdict {
	return Verdict{Action: Allow}
}

func (denyByName) CheckAddress(sandbox, host string, port int, addr netip.Addr) error { return nil }

// TestRefusalsNeverRecordASecret has a client that holds the secret (say,
// after an echo it could decompress) try to write it into the request log
// and the proxy's log through what the proxy quotes when it refuses: the
// target, the Host header, the TLS server name. The records keep the
// shape of what was refused and never the value.
func TestRefusalsNeverRecordASecret(t *testing.T) {
	const lower = "sk-live-lowercase-0123456789abcdef" // survives host name normalisation
	w := newWorld(t, worldOptions{policy: denyByName{}})
	pki := newTestPKI(t)
	up := startUpstream(t, pki, false, echoHeaders, "llm.test")
	authority := fmt.Sprintf("llm.test:%d", up.port)
	w.addProvider(provider.Spec{Name: "llm", BaseURL: "https://" + authority + "/v1", CACert: pki.pemPath})
	w.setSecret(secret.Global(), "llm", lower)

	// A denied absolute-form target, path and host.
	c := dialRaw(t, w.addr)
	fmt.Fprintf(c, "GET http://denied.test/%s HTTP/1.1\r\nHost: denied.test\r\nProxy-Authorization: Basic %s\r\n\r\n",
		lower, basicAuth("cordon", w.token))
	if res, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || res.StatusCode != http.StatusForbidden {
		t.Errorf("denied path: %v %v", res, err)
	}
	if status, _ := w.connectStatus(lower + ".denied.test:443"); status != http.StatusForbidden {
		t.Errorf("denied host: %d", status)
	}
	// A CONNECT target that does not parse.
	if status, _ := w.connectStatus(lower + ":0"); status != http.StatusBadRequest {
		t.Errorf("bad target: %d", status)
	}
	// A TLS server name that disagrees with the CONNECT.
	if tc, err := w.tlsTunnel(authority, lower+".test"); err == nil {
		tc.Close()
		t.Error("handshake with a mismatched server name succeeded")
	}
	// A Host header that disagrees with the tunnel.
	tc, err := w.tlsTunnel(authority, "llm.test")
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	responses := rawExchange(t, tc, "GET /v1/x HTTP/1.1\r\nHost: "+lower+".test\r\nConnection: close\r\n\r\n")
	if len(responses) != 1 || responses[0].StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("Host mismatch: %v", responses)
	}

	time.Sleep(20 * time.Millisecond) // the last event is recorded as the handler returns
	evs := w.events.list()
	if len(evs) < 5 {
		t.Errorf("%d events, want one per refusal: %+v", len(evs), evs)
	}
	for _, ev := range evs {
		if s := fmt.Sprintf("%+v", ev); strings.Contains(s, lower) {
			t.Errorf("the secret is in an audit event: %s", s)
		}
	}
	if strings.Contains(w.logs.String(), lower) {
		t.Errorf("the secret is in the proxy's log:\n%s", w.logs.String())
	}
}
