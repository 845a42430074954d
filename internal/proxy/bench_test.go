package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/secret"
)

// The keep-alive benchmarks send the same small request directly to an
// HTTPS upstream and through the proxy (intercepting and injecting), so
// their ratio is the proxy's cost on this machine:
//
//	go test -run NONE -bench KeepAlive -benchmem ./internal/proxy

func benchUpstream(b *testing.B, h2 bool) (*world, *upstream, *testPKI) {
	pki := newTestPKI(b)
	w := newWorld(b, worldOptions{})
	up := startUpstream(b, pki, h2, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.WriteString(rw, `{"object":"list","data":[{"id":"m"}]}`)
	}), "bench.test")
	w.addProvider(provider.Spec{Name: "bench", BaseURL: fmt.Sprintf("https://bench.test:%d/v1", up.port), CACert: pki.pemPath})
	w.setSecret(secret.Global(), "bench", theSecret)
	return w, up, pki
}

func runRequests(b *testing.B, c *http.Client, url string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
}

func BenchmarkKeepAlive(b *testing.B) {
	for _, h2 := range []bool{false, true} {
		proto := "h1"
		if h2 {
			proto = "h2"
		}
		b.Run("direct-"+proto, func(b *testing.B) {
			_, up, pki := benchUpstream(b, h2)
			tr := &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: pki.pool, ServerName: "bench.test"},
				ForceAttemptHTTP2: h2, MaxIdleConnsPerHost: 16,
			}
			if !h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			runRequests(b, &http.Client{Transport: tr}, fmt.Sprintf("https://127.0.0.1:%d/v1/models", up.port))
		})
		b.Run("cordon-"+proto, func(b *testing.B) {
			w, up, _ := benchUpstream(b, h2)
			c := w.client(h2)
			c.Transport.(*http.Transport).MaxIdleConnsPerHost = 16
			runRequests(b, c, fmt.Sprintf("https://bench.test:%d/v1/models", up.port))
		})
	}
}

// BenchmarkRequestPath is the proxy's own work per request without the
// network: provider match, secret lookup, leak guard and header rewrite.
func BenchmarkRequestPath(b *testing.B) {
	dir := b.TempDir()
	reg := provider.OpenRegistry(dir)
	if _, err := reg.Add(provider.Spec{Name: "llm", BaseURL: "https://llm.example.com/v1"}, false); err != nil {
		b.Fatal(err)
	}
	store, err := secret.OpenFile(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	if err := store.Set(secret.Global(), "llm", theSecret, false); err != nil {
		b.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "https://llm.example.com/v1/chat/completions", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer placeholder")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "OpenAI/JS 4.0")
	out := req.Header.Clone()

	b.ReportAllocs()
	for b.Loop() {
		set, err := reg.Set()
		if err != nil {
			b.Fatal(err)
		}
		snap, err := store.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		m := set.Match("https", "llm.example.com", 443, req.URL.EscapedPath())
		if m.Provider == nil {
			b.Fatal("no match")
		}
		if _, leak := findLeak(snap, req, m.Provider.Name); leak {
			b.Fatal("leak")
		}
		entry, ok := snap.Lookup("", m.Provider.Name)
		if !ok {
			b.Fatal("no secret")
		}
		m.Provider.Auth.Apply(out, "", entry.Value)
	}
}

// BenchmarkRedactor streams a large response body through the redactor
// that masks an injected credential, as a bulk download does.
func BenchmarkRedactor(b *testing.B) {
	chunk := make([]byte, 16<<10) // one TLS record's worth per read
	for i := range chunk {
		chunk[i] = byte(i*7 + i>>8)
	}
	const total = 64 << 20
	buf := make([]byte, copyBufferSize)
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		res := &http.Response{Header: http.Header{}, Body: io.NopCloser(&repeatReader{chunk: chunk, left: total})}
		redactResponse(res, provider.Bearer.WireForms(theSecret))
		for {
			_, err := res.Body.Read(buf)
			if err != nil {
				break
			}
		}
		res.Body.Close()
	}
}

// repeatReader returns chunk again and again, left bytes in all.
type repeatReader struct {
	chunk []byte
	left  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunk[:min(len(r.chunk), r.left)])
	r.left -= n
	return n, nil
}
