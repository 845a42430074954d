package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/secret"
)

// TestIdleConnectionCost holds intercepted HTTP/1.1 connections idle, each
// after one answered request, and checks what each costs the proxy: one
// goroutine, and memory (heap and stacks, the test's client side
// included) within a bound. CORDON_IDLE_HEAP=FILE writes a heap profile
// taken while they are held.
func TestIdleConnectionCost(t *testing.T) {
	if os.Getenv("CORDON_IDLE_HEAP") != "" {
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{config: func(c *Config) { c.MaxConns = 1000 }})
	up := startUpstream(t, pki, false, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprint(rw, `{"data":[]}`)
	}), "idle.test")
	w.addProvider(provider.Spec{Name: "idle", BaseURL: fmt.Sprintf("https://idle.test:%d/v1", up.port), CACert: pki.pemPath})
	w.setSecret(secret.Global(), "idle", theSecret)

	authority := fmt.Sprintf("idle.test:%d", up.port)
	roots := x509.NewCertPool()
	roots.AddCert(w.ca.Certificate())
	sessions := tls.NewLRUClientSessionCache(16)
	open := func() net.Conn {
		raw := w.tunnel(authority)
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		conn := tls.Client(raw, &tls.Config{ServerName: "idle.test", RootCAs: roots,
			NextProtos: []string{"http/1.1"}, ClientSessionCache: sessions})
		fmt.Fprintf(conn, "GET /v1/models HTTP/1.1\r\nHost: %s\r\n\r\n", authority)
		res, err := http.ReadResponse(bufio.NewReaderSize(conn, 256), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET: %s", res.Status)
		}
		raw.SetDeadline(time.Time{})
		return conn
	}
	measure := func() (goroutines int, bytes uint64) {
		var ms runtime.MemStats
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapInuse + ms.StackInuse
	}

	// A first batch, closed again, grows the upstream pool and buffers.
	for range 10 {
		open().Close()
	}
	time.Sleep(100 * time.Millisecond)
	g0, m0 := measure()

	const n = 300
	conns := make([]net.Conn, 0, n)
	for range n {
		conns = append(conns, open())
	}
	time.Sleep(200 * time.Millisecond)
	g1, m1 := measure()
	if path := os.Getenv("CORDON_IDLE_HEAP"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	for _, c := range conns {
		c.Close()
	}

	perConn := float64(g1-g0) / n
	kib := float64(m1-m0) / n / 1024
	t.Logf("per idle connection: %.2f goroutines, %.1f KiB of heap and stack (client side included)", perConn, kib)
	if perConn > 1.05 {
		t.Errorf("an idle connection holds %.2f goroutines, want 1", perConn)
	}
	// The proxy's share is about 25 KiB: the server connection's read
	// and write buffers, the TLS state, and one goroutine's stack.
	limit := 48.0
	if raceDetector {
		limit = 64
	}
	if kib > limit {
		t.Errorf("an idle connection costs %.1f KiB, want at most %.0f", kib, limit)
	}
}
