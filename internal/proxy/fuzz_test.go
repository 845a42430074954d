package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/cordon-dev/cordon/internal/hostname"
	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/secret"
)

// Ways a fuzzed request reaches the proxy.
const (
	viaTLSProvider = iota // HTTP/1.1 inside an intercepted tunnel to the provider
	viaTLSOther           // HTTP/1.1 inside an intercepted tunnel to another host
	viaH2Provider         // HTTP/2 frames inside an intercepted tunnel to the provider
	viaPlainTunnel        // plain HTTP inside a CONNECT to the provider's port
	viaListener           // straight to the proxy's listener: CONNECT or absolute form
	viaCount
)

// FuzzTunnelRequest sends fuzzed bytes through a real proxy, in each of the
// ways a sandbox can reach it, to a provider whose upstream echoes what it
// received. Whatever the bytes, the proxy must not panic or hang, the
// provider's secret may reach only the provider under its base path, and
// it must never come back to the client.
func FuzzTunnelRequest(f *testing.F) {
	fz := newFuzzWorld(f)
	for _, seed := range []struct {
		via int
		raw string
	}{
		{viaTLSProvider, "GET /v1/models HTTP/1.1\r\nHost: {llm}\r\n\r\n"},
		{viaTLSProvider, "GET /v1/../admin HTTP/1.1\r\nHost: {llm}\r\n\r\n"},
		{viaTLSProvider, "GET /v1/%2e%2e/admin HTTP/1.1\r\nHost: {llm}\r\n\r\n"},
		{viaTLSProvider, "POST /v1/x HTTP/1.1\r\nHost: {llm}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: {llm}\r\n\r\n"},
		{viaTLSProvider, "GET http://{evil}/v1/x HTTP/1.1\r\nHost: {llm}\r\n\r\n"},
		{viaTLSProvider, "GET /v1/x HTTP/1.1\r\nHost: {evil}\r\n\r\n"},
		{viaTLSProvider, "GET /v1/x HTTP/1.1\r\nHost: {llm}\r\nX-A: a\r\n Host: {evil}\r\n\r\n"},
		{viaTLSProvider, "GET /v1/x HTTP/1.1\r\nHost: {llm}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
		{viaTLSProvider, "GET /v1/x?key={secret} HTTP/1.1\r\nHost: {llm}\r\n\r\n"},
		{viaTLSOther, "GET /v1/x HTTP/1.1\r\nHost: {evil}\r\nAuthorization: Bearer {secret}\r\n\r\n"},
		{viaTLSOther, "GET /v1/x HTTP/1.1\r\nHost: {llm}\r\n\r\n"},
		{viaTLSOther, "GET /{secret} HTTP/1.1\r\nHost: {evil}\r\n\r\n"},
		{viaPlainTunnel, "GET /v1/x HTTP/1.1\r\nHost: {llm}\r\n\r\n"},
		{viaListener, "GET http://{llm}/v1/x HTTP/1.1\r\nHost: {llm}\r\nProxy-Authorization: {auth}\r\n\r\n"},
		{viaListener, "CONNECT {llm} HTTP/1.1\r\nHost: {llm}\r\nProxy-Authorization: {auth}\r\n\r\nGET /v1/x HTTP/1.1\r\nHost: {llm}\r\n\r\n"},
		{viaListener, "GET http://{evil}/v1/x HTTP/1.1\r\nHost: {llm}\r\nProxy-Authorization: {auth}\r\n\r\n"},
	} {
		f.Add(uint8(seed.via), []byte(seed.raw))
	}
	f.Add(uint8(viaH2Provider), h2Seed(":method", "GET", ":scheme", "https", ":authority", "{llm}", ":path", "/v1/x"))
	f.Add(uint8(viaH2Provider), h2Seed(":method", "GET", ":scheme", "https", ":authority", "{evil}", ":path", "/v1/x"))
	f.Add(uint8(viaH2Provider), h2Seed(":method", "GET", ":scheme", "https", ":authority", "{llm}", ":path", "/v1/../x"))

	f.Fuzz(func(t *testing.T, via uint8, raw []byte) {
		raw = fz.expand(raw)
		// A client that already holds the secret may of course see it
		// again (quoted in a refusal, say); what must hold then is that
		// it goes nowhere it should not.
		holds := bytes.Contains(raw, []byte(theSecret))
		fz.exchange(t, int(via)%viaCount, raw, holds)
		fz.check(t, holds)
	})
}

// h2Seed is a client preface, SETTINGS and one HEADERS frame.
func h2Seed(fields ...string) []byte {
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for i := 0; i+1 < len(fields); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	var out bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&out, nil)
	fr.WriteSettings()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true})
	return out.Bytes()
}

// fuzzWorld is one proxy shared by every input: starting one per input
// would spend the run on certificates.
type fuzzWorld struct {
	*world
	llm, evil     string // authorities
	roots         *x509.CertPool
	mu            sync.Mutex
	violations    []string
	seenLogLength int
}

func newFuzzWorld(f *testing.F) *fuzzWorld {
	w := newWorld(f, worldOptions{config: func(c *Config) {
		// Short, so that an input the proxy waits on costs little.
		c.ReadHeaderTimeout = 150 * time.Millisecond
		c.IdleTimeout = 150 * time.Millisecond
		c.HandshakeTimeout = time.Second
		c.ResponseHeaderTimeout = time.Second
		c.UpstreamIdleTimeout = time.Second
	}})
	pki := newTestPKI(f)
	fz := &fuzzWorld{world: w, roots: x509.NewCertPool()}
	fz.roots.AddCert(w.ca.Certificate())
	guard := func(name string) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			carries := strings.Contains(dumpRequest(r), theSecret)
			clean := path.Clean("/" + r.URL.Path)
			ok := name == "llm" && r.Host == fz.llm && (clean == "/v1" || strings.HasPrefix(clean, "/v1/"))
			if carries && !ok {
				fz.mu.Lock()
				fz.violations = append(fz.violations, name+" received "+dumpRequest(r))
				fz.mu.Unlock()
			}
			// Echo everything back, as a debugging endpoint would.
			for k, v := range r.Header {
				rw.Header()["X-Echo-"+k] = v
			}
			fmt.Fprintf(rw, "%s %s %v", r.Method, r.URL, r.Header)
		})
	}
	llm := startUpstream(f, pki, true, guard("llm"), "llm.test")
	evil := startUpstream(f, pki, true, guard("evil"), "evil.test")
	fz.llm, fz.evil = fmt.Sprintf("llm.test:%d", llm.port), fmt.Sprintf("evil.test:%d", evil.port)
	w.addProvider(provider.Spec{Name: "llm", BaseURL: "https://" + fz.llm + "/v1", CACert: pki.pemPath})
	w.addProvider(provider.Spec{Name: "evil", BaseURL: "https://" + fz.evil + "/none", CACert: pki.pemPath})
	w.setSecret(secret.Global(), "llm", theSecret)
	return fz
}

// expand fills in the placeholders the seeds use.
func (fz *fuzzWorld) expand(raw []byte) []byte {
	r := strings.NewReplacer("{llm}", fz.llm, "{evil}", fz.evil, "{secret}", theSecret,
		"{auth}", "Basic "+basicAuth("cordon", fz.token))
	return []byte(r.Replace(string(raw)))
}

// exchange sends raw one way and reads whatever comes back, within a
// bound: the proxy must answer or close, not hold the connection.
func (fz *fuzzWorld) exchange(t *testing.T, via int, raw []byte, holds bool) {
	// The world's own helpers report to the fuzz target's F, which may
	// not be used inside it.
	intercepted := func(authority, sni, proto string) net.Conn {
		tc := tls.Client(dialConnect(t, fz.addr, fz.token, authority),
			&tls.Config{ServerName: sni, RootCAs: fz.roots, NextProtos: []string{proto}})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		return tc
	}
	var c net.Conn
	switch via {
	case viaTLSProvider:
		c = intercepted(fz.llm, "llm.test", "http/1.1")
	case viaTLSOther:
		c = intercepted(fz.evil, "evil.test", "http/1.1")
	case viaH2Provider:
		c = intercepted(fz.llm, "llm.test", "h2")
	case viaPlainTunnel:
		c = dialConnect(t, fz.addr, fz.token, fz.llm)
	case viaListener:
		c = dialRaw(t, fz.addr)
	}
	defer c.Close()

	c.SetDeadline(time.Now().Add(5 * time.Second))
	go c.Write(raw)
	var got []byte
	if via == viaH2Provider {
		got = readH2(c)
	} else {
		got = readUntilQuiet(c)
	}
	if !holds && bytes.Contains(got, []byte(theSecret)) {
		t.Fatalf("the secret came back to the client: %q", got)
	}
}

// readUntilQuiet reads until the connection closes or, once something has
// arrived, nothing more comes for a moment: what is answered at all is
// answered at once, and a connection kept alive need not be waited out.
func readUntilQuiet(c net.Conn) []byte {
	var out []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	}
}

// readH2 reads HTTP/2 frames until GOAWAY or an error and returns the
// decoded header fields and data, which HPACK would otherwise hide.
func readH2(c net.Conn) []byte {
	var out bytes.Buffer
	fr := http2.NewFramer(nil, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return out.Bytes()
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			for _, hf := range f.Fields {
				fmt.Fprintf(&out, "%s: %s\n", hf.Name, hf.Value)
			}
		case *http2.DataFrame:
			out.Write(f.Data())
		case *http2.GoAwayFrame:
			return out.Bytes()
		}
	}
}

// check fails on anything the upstreams or the proxy's log reported.
func (fz *fuzzWorld) check(t *testing.T, holds bool) {
	fz.mu.Lock()
	violations := fz.violations
	fz.violations = nil
	fz.mu.Unlock()
	if len(violations) > 0 {
		t.Fatalf("the secret went astray:\n%s", strings.Join(violations, "\n"))
	}
	logs := fz.logs.String()
	fresh := logs[fz.seenLogLength:]
	fz.seenLogLength = len(logs)
	if strings.Contains(fresh, "panic") {
		t.Fatalf("the proxy panicked:\n%s", fresh)
	}
	if !holds && strings.Contains(fresh, theSecret) {
		t.Fatalf("the secret is in the proxy's log:\n%s", fresh)
	}
}

// FuzzRedactor streams fuzzed bodies through the redactor in fuzzed
// pieces: every occurrence of each needle must be masked, nothing else
// changed, and the length kept.
func FuzzRedactor(f *testing.F) {
	f.Add([]byte("Bearer sk-abc sk-abc"), []byte{3, 1, 7}, "sk-abc", "c2stYWJj")
	f.Add([]byte("sk-sk-sk-abcabc"), []byte{1}, "sk-abc", "abcabc")
	f.Add([]byte("aaaab"), []byte{1, 1, 1}, "aab", "ab")
	f.Fuzz(func(t *testing.T, body, cuts []byte, a, b string) {
		var forms []string
		for _, s := range []string{a, b} {
			if s != "" && !strings.Contains(s, "*") {
				forms = append(forms, s)
			}
		}
		if len(forms) == 0 {
			return
		}
		res := &http.Response{Header: http.Header{}, Body: io.NopCloser(&pieces{data: body, cuts: cuts})}
		redactResponse(res, forms)
		got, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(body) {
			t.Fatalf("length %d, want %d", len(got), len(body))
		}
		for i := range got {
			if got[i] != body[i] && got[i] != '*' {
				t.Fatalf("byte %d changed from %q to %q", i, body[i], got[i])
			}
		}
		for _, form := range forms {
			if bytes.Contains(got, []byte(form)) {
				t.Fatalf("%q survived in %q", form, got)
			}
		}
	})
}

// pieces reads data in pieces whose sizes come from cuts.
type pieces struct {
	data []byte
	cuts []byte
}

func (p *pieces) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	n := len(p.data)
	if len(p.cuts) > 0 {
		n = min(n, int(p.cuts[0])+1)
		p.cuts = p.cuts[1:]
	}
	n = copy(b, p.data[:n])
	p.data = p.data[n:]
	return n, nil
}

// FuzzParseAuthority: a CONNECT target or URL host that parses gives a
// normalised host and a port in range, and writes back to itself.
func FuzzParseAuthority(f *testing.F) {
	for _, s := range []string{"api.openai.com:443", "[::1]:80", "127.0.0.1", "LLM.Example.com.:8443", "a:b:c", "[::ffff:127.0.0.1]:1", "x%2e:1", ":443"} {
		f.Add(s, uint16(443))
	}
	f.Fuzz(func(t *testing.T, authority string, defaultPort uint16) {
		host, port, err := parseAuthority(authority, int(defaultPort))
		if err != nil {
			return
		}
		if port < 1 || port > 65535 {
			t.Fatalf("%q: port %d", authority, port)
		}
		if norm, err := hostname.Normalize(host); err != nil || norm != host {
			t.Fatalf("%q: host %q is not normalised", authority, host)
		}
		t2 := target{host: host, port: port}
		if h, p, err := parseAuthority(t2.authority(), 0); err != nil || h != host || p != port {
			t.Fatalf("%q: %s reads back as %q %d %v", authority, t2.authority(), h, p, err)
		}
	})
}

// FuzzAuthorized: a Proxy-Authorization value is accepted only when it
// carries the user "cordon" and exactly the token.
func FuzzAuthorized(f *testing.F) {
	f.Add("Basic "+basicAuth("cordon", "t0ken"), "t0ken")
	f.Add("basic  "+basicAuth("cordon", "t0ken")+" ", "t0ken")
	f.Add("Basic "+basicAuth("cordon", "t0ken:x"), "t0ken")
	f.Add("Bearer t0ken", "t0ken")
	f.Fuzz(func(t *testing.T, header, token string) {
		if !authorized(header, token) {
			return
		}
		_, encoded, _ := strings.Cut(header, " ")
		decoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
		if err != nil || string(decoded) != "cordon:"+token {
			t.Fatalf("%q accepted for token %q", header, token)
		}
	})
}
