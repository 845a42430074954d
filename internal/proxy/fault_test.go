package proxy

// Limits and faults: hostile or broken clients and upstreams. In each case
// the request at fault gets a clear answer, and the proxy goes on serving
// everything else.

import (
	"bufio"
	"context"
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
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cordon-dev/cordon/internal/audit"
	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/secret"
)

// faultWorld is a proxy with short limits and one healthy provider, "ok",
// that every test checks is still served.
type faultWorld struct {
	*world
	pki    *testPKI
	ok     *upstream
	okAddr string
}

func newFaultWorld(t *testing.T, opts worldOptions) *faultWorld {
	t.Helper()
	adjust := opts.config
	opts.config = func(c *Config) {
		c.HandshakeTimeout = 500 * time.Millisecond
		c.ReadHeaderTimeout = 500 * time.Millisecond
		c.IdleTimeout = 500 * time.Millisecond
		c.DialTimeout = 500 * time.Millisecond
		c.ResponseHeaderTimeout = 500 * time.Millisecond
		c.UpstreamIdleTimeout = 500 * time.Millisecond
		if adjust != nil {
			adjust(c)
		}
	}
	f := &faultWorld{world: newWorld(t, opts), pki: newTestPKI(t)}
	f.ok = startUpstream(t, f.pki, false, echoHeaders, "ok.test")
	f.okAddr = fmt.Sprintf("ok.test:%d", f.ok.port)
	f.addProvider(provider.Spec{Name: "ok", BaseURL: "https://" + f.okAddr, CACert: f.pki.pemPath})
	f.setSecret(secret.Global(), "ok", theSecret)
	return f
}

// checkServing fails unless a normal request through the proxy succeeds.
func (f *faultWorld) checkServing(t *testing.T) {
	t.Helper()
	c := f.client(false)
	c.Timeout = 5 * time.Second
	res, err := c.Get("https://" + f.okAddr + "/v1/still-serving")
	if err != nil {
		t.Fatalf("the proxy stopped serving: %v", err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || f.ok.last().Header.Get("Authorization") != "Bearer "+theSecret {
		t.Fatalf("the proxy stopped serving: %s", res.Status)
	}
}

// lastEvent waits briefly for an event matching ok and returns it.
func (f *faultWorld) lastEvent(t *testing.T, ok func(audit.Event) bool) audit.Event {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		evs := f.events.list()
		for i := len(evs) - 1; i >= 0; i-- {
			if ok(evs[i]) {
				return evs[i]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no such audit event among %+v", evs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHeaderSizeBounded(t *testing.T) {
	t.Parallel()
	f := newFaultWorld(t, worldOptions{})
	big := strings.Repeat("a", 100<<10)

	// On the proxy's own listener.
	c := dialRaw(t, f.addr)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n", f.okAddr, f.okAddr, big)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized CONNECT: %v %v", res, err)
	}

	// Inside an intercepted HTTP/1.1 tunnel.
	tc, err := f.tlsTunnel(f.okAddr, "ok.test", "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	responses := rawExchange(t, tc, "GET /v1/x HTTP/1.1\r\nHost: "+f.okAddr+"\r\nX-Big: "+big+"\r\n\r\n")
	if len(responses) != 1 || responses[0].StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized request in a tunnel: %v", responses)
	}

	// Inside an intercepted HTTP/2 tunnel.
	tc, err = f.tlsTunnel(f.okAddr, "ok.test", "h2")
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	h := newH2Conn(t, tc)
	status, _ := h.request(":method", "GET", ":scheme", "https", ":authority", f.okAddr, ":path", "/v1/x", "x-big", big)
	if status != http.StatusRequestHeaderFieldsTooLarge && status != -1 {
		t.Errorf("oversized HTTP/2 request: status %d", status)
	}

	for _, r := range f.ok.received() {
		if len(r.Header.Get("X-Big")) > 0 {
			t.Errorf("an oversized request reached the upstream")
		}
	}
	f.checkServing(t)
}

// TestSlowClients holds connections open in every way a client can stall
// before its request is complete. None may hold the proxy: each is cut
// within its bound, and a normal client is served all the while.
func TestSlowClients(t *testing.T) {
	t.Parallel()
	f := newFaultWorld(t, worldOptions{})
	const bound = 3 * time.Second // the limits are 500ms; this is slack for a loaded machine

	trickle := func(c net.Conn, s string) {
		for i := range len(s) {
			if _, err := c.Write([]byte{s[i]}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	tlsHello := func(c net.Conn) []byte {
		// A real ClientHello, captured from a client that is never
		// allowed to finish.
		var buf recordingConn
		tls.Client(&buf, &tls.Config{ServerName: "ok.test"}).Handshake()
		return buf.written
	}
	modes := []struct {
		name  string
		stall func(t *testing.T) net.Conn
	}{
		{"request line trickled to the listener", func(t *testing.T) net.Conn {
			c := dialRaw(t, f.addr)
			go trickle(c, "CONNECT "+f.okAddr+" HTTP/1.1\r\nHost: "+f.okAddr+"\r\nX-Slow: "+strings.Repeat("a", 200))
			return c
		}},
		{"silent after CONNECT", func(t *testing.T) net.Conn {
			return f.tunnel(f.okAddr)
		}},
		{"ClientHello trickled", func(t *testing.T) net.Conn {
			c := f.tunnel(f.okAddr)
			go trickle(c, string(tlsHello(c)))
			return c
		}},
		{"plain request trickled in a tunnel", func(t *testing.T) net.Conn {
			c := f.tunnel(f.okAddr)
			go trickle(c, "GET /v1/x HTTP/1.1\r\nHost: "+f.okAddr+"\r\nX-Slow: "+strings.Repeat("a", 200))
			return c
		}},
		{"request trickled in an intercepted tunnel", func(t *testing.T) net.Conn {
			tc, err := f.tlsTunnel(f.okAddr, "ok.test", "http/1.1")
			if err != nil {
				t.Fatal(err)
			}
			go trickle(tc, "GET /v1/x HTTP/1.1\r\nHost: "+f.okAddr+"\r\nX-Slow: "+strings.Repeat("a", 200))
			return tc
		}},
		{"idle keep-alive connection", func(t *testing.T) net.Conn {
			tc, err := f.tlsTunnel(f.okAddr, "ok.test", "http/1.1")
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(tc, "GET /v1/x HTTP/1.1\r\nHost: %s\r\n\r\n", f.okAddr)
			res, err := http.ReadResponse(bufio.NewReader(tc), nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			return tc
		}},
		{"idle HTTP/2 connection", func(t *testing.T) net.Conn {
			tc, err := f.tlsTunnel(f.okAddr, "ok.test", "h2")
			if err != nil {
				t.Fatal(err)
			}
			newH2Conn(t, tc)
			return tc
		}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			const n = 10
			start := time.Now()
			closed := make(chan time.Duration, n)
			for range n {
				c := m.stall(t)
				go func() {
					c.SetReadDeadline(time.Now().Add(2 * bound))
					io.Copy(io.Discard, c)
					closed <- time.Since(start)
				}()
			}
			f.checkServing(t)
			for range n {
				if d := <-closed; d > bound {
					t.Errorf("a stalled connection was held for %v", d)
				}
			}
		})
	}
	f.checkServing(t)
}

// recordingConn is a net.Conn that keeps what is written to it and never
// answers.
type recordingConn struct {
	net.Conn
	written []byte
}

func (c *recordingConn) Write(b []byte) (int, error) {
	c.written = append(c.written, b...)
	return len(b), nil
}
func (c *recordingConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *recordingConn) Close() error                     { return nil }
func (c *recordingConn) SetDeadline(time.Time) error      { return nil }
func (c *recordingConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recordingConn) SetWriteDeadline(time.Time) error { return nil }
func (c *recordingConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *recordingConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

func TestConnectionCap(t *testing.T) {
	const limit = 4
	f := newFaultWorld(t, worldOptions{sandbox: "box", config: func(c *Config) {
		c.MaxConns = limit
		c.IdleTimeout = time.Minute
		c.HandshakeTimeout = time.Minute
	}})
	// A second listener for the same sandbox shares its count; one for
	// another sandbox does not.
	listen := func(sandbox string) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go f.proxy.Serve(l, Identity{Sandbox: sandbox, Token: f.token})
		return l.Addr().String()
	}
	sameBox, otherBox := listen("box"), listen("other")

	var held []net.Conn
	for range limit - 1 {
		held = append(held, f.tunnel(f.okAddr))
	}
	held = append(held, dialConnect(t, sameBox, f.token, f.okAddr))

	// Over the limit: a clear refusal, on either of the sandbox's
	// listeners, and one audit event for the burst.
	for _, addr := range []string{f.addr, sameBox, f.addr} {
		c := dialRaw(t, addr)
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n",
			f.okAddr, f.okAddr, basicAuth("cordon", f.token))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("over the limit: %v", err)
		}
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "too many connections") {
			t.Errorf("over the limit: %s %q", res.Status, body)
		}
	}
	ev := f.lastEvent(t, func(e audit.Event) bool { return e.Status == http.StatusServiceUnavailable })
	if ev.Sandbox != "box" || ev.Decision != "error" || !strings.Contains(ev.Reason, "limit 4") {
		t.Errorf("refusal event %+v", ev)
	}
	// Refusals are recorded once a second at most.
	if n := len(f.events.list()); n > 2 {
		t.Errorf("%d events for one burst of three refusals", n)
	}

	// Another sandbox is not affected.
	dialConnect(t, otherBox, f.token, f.okAddr).Close()

	// A closed connection gives its place back.
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dialRaw(t, f.addr)
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n",
			f.okAddr, f.okAddr, basicAuth("cordon", f.token))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err == nil && res.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no place after closing a connection: %v %v", res, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialConnect opens a CONNECT tunnel through the proxy at addr.
func dialConnect(t *testing.T, addr, token, authority string) net.Conn {
	t.Helper()
	c := dialRaw(t, addr)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n",
		authority, authority, basicAuth("cordon", token))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("CONNECT through %s: %v %v", addr, res, err)
	}
	c.SetReadDeadline(time.Time{})
	return c
}

// An upstream that resets the connection halfway through a response: the
// client's response is cut, the event says so, and the proxy serves on.
func TestUpstreamResetMidStream(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			f := newFaultWorld(t, worldOptions{})
			reset := startUpstream(t, f.pki, h2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "1000")
				io.WriteString(w, "the first part")
				w.(http.Flusher).Flush()
				time.Sleep(50 * time.Millisecond)
				if h2 {
					panic(http.ErrAbortHandler) // the server resets the stream
				}
				c, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					c.(*tls.Conn).NetConn().(*net.TCPConn).SetLinger(0)
					c.Close()
				}
			}), "reset.test")
			f.addProvider(provider.Spec{Name: "reset", BaseURL: fmt.Sprintf("https://reset.test:%d", reset.port),
				CACert: f.pki.pemPath})

			// The cut comes before or after the response headers,
			// depending on whether the proxy had flushed them.
			res, err := f.client(h2).Get(fmt.Sprintf("https://reset.test:%d/v1/x", reset.port))
			if err == nil {
				body, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err == nil {
					t.Errorf("the client read a complete response: %q", body)
				}
			}
			ev := f.lastEvent(t, func(e audit.Event) bool { return e.Host == "reset.test" })
			if ev.Decision != "error" || !strings.Contains(ev.Reason, "the response was cut") || ev.Status != 200 {
				t.Errorf("event %+v", ev)
			}
			f.checkServing(t)
		})
	}
}

func TestStalledUpstream(t *testing.T) {
	t.Parallel()
	f := newFaultWorld(t, worldOptions{})
	release := make(chan struct{})
	stall := startUpstream(t, f.pki, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/headers":
			<-release
		case "/body":
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			<-release
		case "/alive":
			// Slower overall than any limit, but never quiet for long.
			for i := range 10 {
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(150 * time.Millisecond)
			}
		case "/upload":
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "got %d", n)
		}
	}), "stall.test")
	// Registered after the server, so that it runs before the server's
	// Close, which waits for the stalled handlers.
	t.Cleanup(func() { close(release) })
	f.addProvider(provider.Spec{Name: "stall", BaseURL: fmt.Sprintf("https://stall.test:%d", stall.port), CACert: f.pki.pemPath})
	base := fmt.Sprintf("https://stall.test:%d", stall.port)
	c := f.client(false)
	c.Timeout = 10 * time.Second

	t.Run("no response headers", func(t *testing.T) {
		start := time.Now()
		status, body := get(t, c, base+"/headers")
		if status != http.StatusGatewayTimeout || !strings.Contains(body, "no response headers within 500ms") {
			t.Errorf("%d %q", status, body)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("answered after %v", d)
		}
		ev := f.lastEvent(t, func(e audit.Event) bool { return e.Path == "/headers" })
		if ev.Status != http.StatusGatewayTimeout || ev.Decision != "error" {
			t.Errorf("event %+v", ev)
		}
	})
	t.Run("body stalls", func(t *testing.T) {
		start := time.Now()
		res, err := c.Get(base + "/body")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err == nil || string(body) != "partial" {
			t.Errorf("%q %v", body, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("cut after %v", d)
		}
		ev := f.lastEvent(t, func(e audit.Event) bool { return e.Path == "/body" })
		if ev.Decision != "error" || !strings.Contains(ev.Reason, "nothing received for 500ms") {
			t.Errorf("event %+v", ev)
		}
	})
	t.Run("slow but alive stream", func(t *testing.T) {
		status, body := get(t, c, base+"/alive")
		if status != 200 || strings.Count(body, "data:") != 10 {
			t.Errorf("%d %q", status, body)
		}
	})
	t.Run("slow upload", func(t *testing.T) {
		// Sending the request takes longer than the wait for headers;
		// that wait starts only once it is sent.
		pr, pw := io.Pipe()
		go func() {
			for range 8 {
				pw.Write([]byte("chunk"))
				time.Sleep(150 * time.Millisecond)
			}
			pw.Close()
		}()
		res, err := c.Post(base+"/upload", "text/plain", pr)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(body) != "got 40" {
			t.Errorf("%s %q", res.Status, body)
		}
	})
	f.checkServing(t)
}

func TestBadUpstreamCertificates(t *testing.T) {
	f := newFaultWorld(t, worldOptions{})
	expired := f.pki.serverCert(t, "expired.test", "127.0.0.1")
	leaf, _ := x509.ParseCertificate(expired.Certificate[0])
	// Re-sign the same key with dates in the past.
	tmpl := *leaf
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, f.pki.cert, leaf.PublicKey, f.pki.key)
	if err != nil {
		t.Fatal(err)
	}
	expired.Certificate[0] = der

	selfKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	selfTmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "self.test"},
		DNSNames: []string{"self.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	selfDER, _ := x509.CreateCertificate(rand.Reader, selfTmpl, selfTmpl, &selfKey.PublicKey, selfKey)
	selfSigned := tls.Certificate{Certificate: [][]byte{selfDER}, PrivateKey: selfKey}

	for _, tt := range []struct {
		name, host string
		cert       *tls.Certificate // nil: speak plain HTTP on the port
		want       string
	}{
		{"expired", "expired.test", &expired, "certificate of expired.test"},
		{"self-signed", "self.test", &selfSigned, "certificate of self.test"},
		{"for another name", "wrongname.test", &f.ok.TLS.Certificates[0], "not valid for that name"},
		{"not TLS at all", "plain.test", nil, "upstream plain.test"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: echoHeaders}
			if tt.cert != nil {
				srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*tt.cert}}
				go srv.ServeTLS(l, "", "")
			} else {
				go srv.Serve(l)
			}
			t.Cleanup(func() { srv.Close() })
			port := l.Addr().(*net.TCPAddr).Port
			f.addProvider(provider.Spec{Name: strings.Split(tt.host, ".")[0], CACert: f.pki.pemPath,
				BaseURL: fmt.Sprintf("https://%s:%d", tt.host, port)})
			f.setSecret(secret.Global(), strings.Split(tt.host, ".")[0], theSecret+"-"+tt.name)

			status, body := get(t, f.client(false), fmt.Sprintf("https://%s:%d/v1/x", tt.host, port))
			if status != http.StatusBadGateway || !strings.Contains(body, tt.want) {
				t.Errorf("%d %q, want 502 with %q", status, body, tt.want)
			}
			f.checkServing(t)
		})
	}
}

func TestResolverFaults(t *testing.T) {
	t.Parallel()
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	f := newFaultWorld(t, worldOptions{config: func(c *Config) {
		lookup := c.LookupNetIP
		c.LookupNetIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
			switch host {
			case "hangs.example":
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-hang:
					return nil, errors.New("released")
				}
			case "servfail.example":
				return nil, &net.DNSError{Err: "server misbehaving", Name: host, IsTemporary: true}
			case "empty.example":
				return nil, nil
			}
			return lookup(ctx, host)
		}
	}})
	c := f.client(false)
	for _, host := range []string{"hangs.example", "servfail.example", "empty.example", "nxdomain.example"} {
		start := time.Now()
		status, body := get(t, c, "https://"+host+"/v1/x")
		if status != http.StatusBadGateway || !strings.Contains(body, "cannot resolve "+host) {
			t.Errorf("%s: %d %q", host, status, body)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: answered after %v", host, d)
		}
	}
	f.checkServing(t)
}
