package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/secret"
)

// TestSoak keeps many mixed exchanges going through one proxy at once
// (SSE streams, uploads, WebSocket echoes), then checks that none failed
// and that goroutines, descriptors and heap return to their baseline.
// CI runs a short version; CORDON_SOAK=1 runs the full one (500 streams
// for 60 seconds):
//
//	CORDON_SOAK=1 go test -run TestSoak -timeout 10m ./internal/proxy
func TestSoak(t *testing.T) {
	workers, duration := 60, 4*time.Second
	if os.Getenv("CORDON_SOAK") == "1" {
		workers, duration = 500, 60*time.Second
	} else if testing.Short() {
		t.Skip("soak")
	}

	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{config: func(c *Config) { c.MaxConns = 4 * workers }})
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/stream", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/event-stream")
		for i := range 10 {
			fmt.Fprintf(rw, "data: %d\n\n", i)
			rw.(http.Flusher).Flush()
			time.Sleep(5 * time.Millisecond)
		}
	})
	mux.HandleFunc("/v1/upload", func(rw http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(rw, n)
	})
	mux.Handle("/v1/socket", websocket.Handler(func(c *websocket.Conn) { io.Copy(c, c) }))
	up := startUpstream(t, pki, false, mux, "soak.test")
	w.addProvider(provider.Spec{Name: "soak", BaseURL: fmt.Sprintf("https://soak.test:%d/v1", up.port), CACert: pki.pemPath})
	w.setSecret(secret.Global(), "soak", theSecret)
	base := fmt.Sprintf("https://soak.test:%d/v1", up.port)

	// The baseline is taken after one of each exchange, so that pools
	// and caches that are meant to stay are already there.
	c := w.client(true)
	var failures atomic.Int64
	var done atomic.Int64
	errs := make(chan error, 16)
	fail := func(err error) {
		failures.Add(1)
		select {
		case errs <- err:
		default:
		}
	}
	exchange := func(i int, c *http.Client) {
		switch i % 3 {
		case 0:
			res, err := c.Get(base + "/stream")
			if err != nil {
				fail(err)
				return
			}
			n := 0
			sc := bufio.NewScanner(res.Body)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "data: ") {
					n++
				}
			}
			res.Body.Close()
			if n != 10 {
				fail(fmt.Errorf("stream: %d events", n))
			}
		case 1:
			res, err := c.Post(base+"/upload", "application/octet-stream", io.LimitReader(zeros{}, 256<<10))
			if err != nil {
				fail(err)
				return
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if string(body) != strconv.Itoa(256<<10) {
				fail(fmt.Errorf("upload: upstream counted %q", body))
			}
		default:
			tc, err := soakTunnel(w, fmt.Sprintf("soak.test:%d", up.port))
			if err != nil {
				fail(err)
				return
			}
			cfg, _ := websocket.NewConfig(base+"/socket", "https://soak.test")
			ws, err := websocket.NewClient(cfg, tc)
			if err != nil {
				tc.Close()
				fail(err)
				return
			}
			for j := range 5 {
				msg := fmt.Sprintf("m%d", j)
				var back string
				ws.SetDeadline(time.Now().Add(10 * time.Second))
				if websocket.Message.Send(ws, msg) != nil || websocket.Message.Receive(ws, &back) != nil || back != msg {
					fail(fmt.Errorf("websocket echo %q", back))
					break
				}
			}
			ws.Close()
		}
		done.Add(1)
	}
	for i := range 3 {
		exchange(i, c)
	}
	c.Transport.(*http.Transport).CloseIdleConnections()
	settle()
	goroutines, fds, heap := runtime.NumGoroutine(), openFDs(t), liveHeap()

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			// Each worker has its own client, so the proxy holds as many
			// connections as there are workers.
			c := w.client(i%2 == 0)
			defer c.Transport.(*http.Transport).CloseIdleConnections()
			for j := i; ctx.Err() == nil; j++ {
				exchange(j, c)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d exchanges failed", n, done.Load())
	}
	t.Logf("%d exchanges by %d workers in %v", done.Load(), workers, duration)

	// Idle connections the proxy pooled upstream go with the idle
	// timeout; close them now rather than wait for it. The test upstream
	// keeps every request it saw; that is the harness's memory, not the
	// proxy's.
	w.proxy.upstream.closeIdle()
	up.mu.Lock()
	up.requests = nil
	up.mu.Unlock()
	w.events.mu.Lock()
	w.events.all = nil
	w.events.mu.Unlock()
	w.logs.mu.Lock()
	w.logs.b = strings.Builder{}
	w.logs.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		settle()
		g, f, h := runtime.NumGoroutine(), openFDs(t), liveHeap()
		if g <= goroutines+5 && f <= fds+5 && h <= heap+16<<20 {
			t.Logf("after: %d goroutines (baseline %d), %d descriptors (%d), heap %d MiB (%d)",
				g, goroutines, f, fds, h>>20, heap>>20)
			break
		}
		if time.Now().After(deadline) {
			if path := os.Getenv("CORDON_SOAK_HEAP"); path != "" {
				if f, err := os.Create(path); err == nil {
					pprof.WriteHeapProfile(f)
					f.Close()
				}
			}
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("not back to baseline: %d goroutines (baseline %d), %d descriptors (%d), heap %d MiB (%d)\n%s",
				g, goroutines, f, fds, h>>20, heap>>20, buf[:n])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// soakTunnel opens an intercepted TLS tunnel like world.tlsTunnel, but
// leaves nothing registered with the test: the soak opens thousands.
func soakTunnel(w *world, authority string) (*tls.Conn, error) {
	conn, err := net.Dial("tcp", w.addr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n",
		authority, authority, basicAuth("cordon", w.token))
	res, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil || res.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("CONNECT: %v %v", res, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(w.ca.Certificate())
	tc := tls.Client(conn, &tls.Config{ServerName: "soak.test", RootCAs: roots, NextProtos: []string{"http/1.1"}})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

func settle() {
	runtime.GC()
	time.Sleep(100 * time.Millisecond)
}

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}

// liveHeap is the bytes of heap objects; right after settle's collection,
// those still reachable. (HeapInuse would count the spans they are spread
// over, which after heavy churn says more about fragmentation than about
// what the proxy holds on to.)
func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
