package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/secret"
)

func TestWebSocketEcho(t *testing.T) {
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{})
	var gotAuth atomic.Value
	ws := websocket.Server{Handler: func(c *websocket.Conn) {
		gotAuth.Store(c.Request().Header.Get("Authorization"))
		io.Copy(c, c)
	}}
	up := startUpstream(t, pki, false, ws, "ws.test")
	w.addProvider(provider.Spec{Name: "ws", BaseURL: fmt.Sprintf("https://ws.test:%d", up.port), CACert: pki.pemPath})
	w.setSecret(secret.Global(), "ws", theSecret)

	authority := fmt.Sprintf("ws.test:%d", up.port)
	tc, err := w.tlsTunnel(authority, "ws.test", "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := websocket.NewConfig("wss://"+authority+"/socket", "https://ws.test")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Header = http.Header{"Authorization": {"Bearer placeholder"}}
	conn, err := websocket.NewClient(cfg, tc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 5 {
		msg := fmt.Sprintf("message %d", i)
		if err := websocket.Message.Send(conn, msg); err != nil {
			t.Fatal(err)
		}
		var back string
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := websocket.Message.Receive(conn, &back); err != nil {
			t.Fatal(err)
		}
		if back != msg {
			t.Fatalf("echo %q, want %q", back, msg)
		}
	}
	if got := gotAuth.Load(); got != "Bearer "+theSecret {
		t.Errorf("handshake Authorization = %q", got)
	}
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestBulkTransferBoundedMemory streams a large body each way and checks
// that the heap never holds more than a small part of it.
func TestBulkTransferBoundedMemory(t *testing.T) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 32 << 20
	}
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{})
	up := startUpstream(t, pki, false, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			n, err := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(rw, "%d %v", n, err)
			return
		}
		rw.Header().Set("Content-Length", fmt.Sprint(size))
		io.CopyN(rw, zeros{}, size)
	}), "bulk.test")
	w.addProvider(provider.Spec{Name: "bulk", BaseURL: fmt.Sprintf("https://bulk.test:%d", up.port), CACert: pki.pemPath})
	w.setSecret(secret.Global(), "bulk", theSecret)
	base := fmt.Sprintf("https://bulk.test:%d/", up.port)

	var peak atomic.Uint64
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		var ms runtime.MemStats
		for ctx.Err() == nil {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	c := w.client(false)
	res, err := c.Get(base)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil || n != size {
		t.Fatalf("downloaded %d bytes, %v", n, err)
	}

	res, err = c.Post(base, "application/octet-stream", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != fmt.Sprintf("%d <nil>", size) {
		t.Fatalf("upload: upstream said %q", body)
	}
	stop()

	// Client, proxy and upstream share this process; all three together
	// must stay far below the transfer size.
	if limit := uint64(64 << 20); peak.Load() > limit {
		t.Errorf("heap peaked at %d MiB moving %d MiB each way", peak.Load()>>20, size>>20)
	}
	t.Logf("heap peak %d MiB for %d MiB each way", peak.Load()>>20, size>>20)
	ev := w.events.list()
	if len(ev) != 2 || ev[0].BytesOut != size || ev[1].BytesIn != size {
		t.Errorf("audit byte counts: %+v", ev)
	}
}

// fakePolicy decides by host.
type fakePolicy struct {
	actions map[string]Action
	blocked map[netip.Addr]bool
}

func (f *fakePolicy) Connect(sandbox, host string, port int) Verdict {
	if a, ok := f.actions[host]; ok {
		return Verdict{Action: a, Rule: "rule-" + host, Reason: string(a) + " " + host}
	}
	return Verdict{Action: Allow}
}

func (f *fakePolicy) Request(sandbox, host string, port int, method, path string) Verdict {
	if strings.HasPrefix(path, "/forbidden") {
		return Verdict{Action: Deny, Rule: "no-forbidden", Reason: "path /forbidden is denied"}
	}
	return Verdict{Action: Allow}
}

func (f *fakePolicy) CheckAddress(sandbox, host string, port int, addr netip.Addr) error {
	if f.blocked[addr] {
		return errors.New(addr.String() + " is in a blocked range")
	}
	return nil
}

func TestPolicyOutcomes(t *testing.T) {
	pki := newTestPKI(t)
	pol := &fakePolicy{
		actions: map[string]Action{"denied.test": Deny, "blind.test": Bypass, "llm.test": Bypass},
		blocked: map[netip.Addr]bool{netip.MustParseAddr("10.9.9.9"): true},
	}
	w := newWorld(t, worldOptions{policy: pol})
	w.hosts["internal.test"] = netip.MustParseAddr("10.9.9.9")
	blind := startUpstream(t, pki, false, echoHeaders, "blind.test")
	llm := startUpstream(t, pki, false, echoHeaders, "llm.test")
	w.addProvider(provider.Spec{Name: "llm", BaseURL: fmt.Sprintf("https://llm.test:%d", llm.port), CACert: pki.pemPath})
	w.setSecret(secret.Global(), "llm", theSecret)
	c := w.client(false)

	status, body := w.connectStatus("denied.test:443")
	if status != http.StatusForbidden || !strings.Contains(body, "deny denied.test") {
		t.Errorf("denied host: %d %q", status, body)
	}
	status, body = get(t, c, "https://internal.test/")
	if status != http.StatusForbidden || !strings.Contains(body, "blocked range") {
		t.Errorf("blocked address: %d %q", status, body)
	}
	status, body = get(t, c, fmt.Sprintf("https://llm.test:%d/forbidden/x", llm.port))
	if status != http.StatusForbidden || !strings.Contains(body, "path /forbidden is denied") {
		t.Errorf("denied path: %d %q", status, body)
	}

	// A bypassed host is tunnelled blind: the client sees the upstream's
	// own certificate, and cordon injects nothing.
	roots := x509.NewCertPool()
	roots.AddCert(pki.cert)
	tc, err := w.tlsTunnel(fmt.Sprintf("blind.test:%d", blind.port), "blind.test")
	if err == nil {
		tc.Close()
		t.Error("a bypassed tunnel presented cordon's certificate")
	}
	conn := w.tunnel(fmt.Sprintf("blind.test:%d", blind.port))
	direct := tls.Client(conn, &tls.Config{ServerName: "blind.test", RootCAs: roots})
	if err := direct.Handshake(); err != nil {
		t.Fatalf("bypassed tunnel: %v", err)
	}
	direct.Close()

	// A bypass rule for a host with a credential is ignored: injection
	// must not be lost silently.
	status, body = get(t, c, fmt.Sprintf("https://llm.test:%d/", llm.port))
	if status != 200 || llm.last().Header.Get("Authorization") != "Bearer "+theSecret {
		t.Errorf("bypassed provider host: %d %s", status, body)
	}

	var decisions []string
	for _, ev := range w.events.list() {
		decisions = append(decisions, ev.Host+":"+ev.Decision)
	}
	want := []string{"denied.test:deny", "internal.test:deny", "llm.test:deny", "blind.test:bypass"}
	for _, d := range want {
		found := false
		for _, got := range decisions {
			found = found || got == d
		}
		if !found {
			t.Errorf("no %s event in %v", d, decisions)
		}
	}
}

func TestPlainHTTPProvider(t *testing.T) {
	w := newWorld(t, worldOptions{})
	plain := startPlain(t, echoHeaders)
	w.addProvider(provider.Spec{Name: "ollama", BaseURL: fmt.Sprintf("http://ollama.test:%d", plain.port)})
	w.setSecret(secret.Global(), "ollama", theSecret)

	status, _ := get(t, w.client(false), fmt.Sprintf("http://ollama.test:%d/api/tags", plain.port))
	if status != 200 || plain.last().Header.Get("Authorization") != "Bearer "+theSecret {
		t.Errorf("%d %q", status, plain.last().Header.Get("Authorization"))
	}
	// The same host on another port gets nothing.
	other := startPlain(t, echoHeaders)
	get(t, w.client(false), fmt.Sprintf("http://ollama.test:%d/api/tags", other.port))
	if other.last().Header.Get("Authorization") != "" {
		t.Error("credential sent to another port")
	}
}

func TestShutdownLetsStreamsFinish(t *testing.T) {
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{})
	up := startUpstream(t, pki, false, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/event-stream")
		for i := range 5 {
			fmt.Fprintf(rw, "data: %d\n\n", i)
			rw.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond)
		}
	}), "slow.test")
	w.addProvider(provider.Spec{Name: "slow", BaseURL: fmt.Sprintf("https://slow.test:%d", up.port), CACert: pki.pemPath})

	res, err := w.client(false).Get(fmt.Sprintf("https://slow.test:%d/", up.port))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- w.proxy.Shutdown(ctx)
	}()
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || strings.Count(string(body), "data:") != 5 {
		t.Errorf("stream cut by shutdown: %q %v", body, err)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	// After shutdown, nothing is accepted.
	if conn, err := netDial(w.addr); err == nil {
		conn.Close()
		t.Error("listener still accepting after Shutdown")
	}
}

// TestAnswerBeforeUploadEnds sends a request whose upstream answers as soon
// as it has parsed the body, before the proxy has seen the body's end. The
// proxy's own server must leave the request body to the upstream leg while
// the answer streams back: were it to drain and close that body when the
// response headers go out, the upstream write would fail and take the
// streaming response down with it.
func TestAnswerBeforeUploadEnds(t *testing.T) {
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{})
	up := startUpstream(t, pki, false, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var msg struct{ N int }
		if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		rw.Header().Set("Content-Type", "text/event-stream")
		for i := range 4 {
			fmt.Fprintf(rw, "data: %d.%d\n\n", msg.N, i)
			rw.(http.Flusher).Flush()
			time.Sleep(200 * time.Microsecond)
		}
	}), "early.test")
	w.addProvider(provider.Spec{Name: "early", BaseURL: fmt.Sprintf("https://early.test:%d", up.port), CACert: pki.pemPath})
	w.setSecret(secret.Global(), "early", theSecret)

	client := w.client(false)
	url := fmt.Sprintf("https://early.test:%d/v1/stream", up.port)
	const rounds = 300
	deadline := time.Now().Add(20 * time.Second)
	for n := 0; n < rounds && time.Now().Before(deadline); n++ {
		// A reader the transport cannot see through, so that the body
		// goes out after the headers as a client's stream does.
		payload := fmt.Sprintf(`{"N": %d}`, n)
		req, err := http.NewRequest(http.MethodPost, url, io.MultiReader(strings.NewReader(payload)))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(len(payload))
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("round %d: %v", n, err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatalf("round %d: the stream was cut after %q: %v", n, got, err)
		}
		want := fmt.Sprintf("data: %d.0\n\ndata: %d.1\n\ndata: %d.2\n\ndata: %d.3\n\n", n, n, n, n)
		if string(got) != want {
			t.Fatalf("round %d: got %q, want %q", n, got, want)
		}
	}
	for _, ev := range w.events.list() {
		if ev.Decision != "allow" {
			t.Fatalf("an exchange was recorded as %s: %s", ev.Decision, ev.Reason)
		}
	}
}
