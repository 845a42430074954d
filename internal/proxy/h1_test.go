package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cordon-dev/cordon/internal/audit"
	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/secret"
)

// TestHTTP1Exchanges drives the HTTP/1.1 loop inside an intercepted tunnel
// with what clients send besides one plain request at a time: requests
// sent ahead, HEAD, HTTP/1.0 keep-alive, a body announced with
// Expect: 100-continue, and a response without a length.
func TestHTTP1Exchanges(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{})
	up := startUpstream(t, pki, false, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/v1/unsized":
			rw.(http.Flusher).Flush() // no Content-Length: chunked upstream
			fmt.Fprintf(rw, "unsized %s", body)
		case "/v1/hints":
			rw.Header().Set("Link", "</style.css>; rel=preload")
			rw.WriteHeader(http.StatusEarlyHints)
			io.WriteString(rw, "hinted")
		case "/v1/trailer":
			rw.Header().Set("Trailer", "X-Sum")
			io.WriteString(rw, "with trailer")
			rw.Header().Set("X-Sum", "42")
		default:
			rw.Header().Set("X-Auth", r.Header.Get("Authorization"))
			fmt.Fprintf(rw, "%s %s body=%q", r.Method, r.URL.Path, body)
		}
	}), "h1.test")
	authority := fmt.Sprintf("h1.test:%d", up.port)
	w.addProvider(provider.Spec{Name: "h1", BaseURL: "https://" + authority + "/v1", CACert: pki.pemPath})
	w.setSecret(secret.Global(), "h1", theSecret)
	host := "Host: " + authority + "\r\n"

	open := func(t *testing.T) (io.Writer, *bufio.Reader) {
		tc, err := w.tlsTunnel(authority, "h1.test", "http/1.1")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		return tc, bufio.NewReader(tc)
	}
	read := func(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
		t.Helper()
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, string(body)
	}

	t.Run("requests sent ahead", func(t *testing.T) {
		c, br := open(t)
		io.WriteString(c, "GET /v1/a HTTP/1.1\r\n"+host+"\r\n"+
			"POST /v1/b HTTP/1.1\r\n"+host+"Content-Length: 3\r\n\r\nxyz"+
			"GET /v1/c HTTP/1.1\r\n"+host+"\r\n")
		for _, want := range []string{`GET /v1/a body=""`, `POST /v1/b body="xyz"`, `GET /v1/c body=""`} {
			res, body := read(t, br, "GET")
			// The upstream got the key; its echo comes back masked.
			if auth := res.Header.Get("X-Auth"); body != want || auth != "Bearer "+strings.Repeat("*", len(theSecret)) {
				t.Errorf("got %q (auth %q), want %q", body, auth, want)
			}
		}
	})

	t.Run("HEAD then GET", func(t *testing.T) {
		c, br := open(t)
		io.WriteString(c, "HEAD /v1/h HTTP/1.1\r\n"+host+"\r\n")
		res, body := read(t, br, "HEAD")
		if res.StatusCode != 200 || body != "" {
			t.Errorf("HEAD: %s %q", res.Status, body)
		}
		io.WriteString(c, "GET /v1/g HTTP/1.1\r\n"+host+"\r\n")
		if _, body := read(t, br, "GET"); body != `GET /v1/g body=""` {
			t.Errorf("GET after HEAD: %q", body)
		}
	})

	t.Run("HTTP/1.0 keep-alive", func(t *testing.T) {
		c, br := open(t)
		for i := range 2 {
			io.WriteString(c, "GET /v1/old HTTP/1.0\r\n"+host+"Connection: keep-alive\r\n\r\n")
			res, body := read(t, br, "GET")
			if body != `GET /v1/old body=""` || res.Close {
				t.Errorf("request %d: %q, close=%v", i, body, res.Close)
			}
		}
		// Without a length, an HTTP/1.0 client learns the end of the body
		// from the end of the connection.
		io.WriteString(c, "GET /v1/unsized HTTP/1.0\r\n"+host+"Connection: keep-alive\r\n\r\n")
		res, body := read(t, br, "GET")
		if body != "unsized " || !res.Close {
			t.Errorf("unsized for HTTP/1.0: %q, close=%v", body, res.Close)
		}
	})

	t.Run("Expect 100-continue", func(t *testing.T) {
		c, br := open(t)
		io.WriteString(c, "POST /v1/e HTTP/1.1\r\n"+host+"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("first line %q, %v; want 100 Continue", line, err)
		}
		if blank, _ := br.ReadString('\n'); blank != "\r\n" {
			t.Fatalf("100 Continue followed by %q", blank)
		}
		io.WriteString(c, "hello")
		if _, body := read(t, br, "POST"); body != `POST /v1/e body="hello"` {
			t.Errorf("after 100 Continue: %q", body)
		}
		io.WriteString(c, "GET /v1/next HTTP/1.1\r\n"+host+"\r\n")
		if _, body := read(t, br, "GET"); body != `GET /v1/next body=""` {
			t.Errorf("next request: %q", body)
		}
	})

	t.Run("unsupported Expect", func(t *testing.T) {
		c, br := open(t)
		io.WriteString(c, "POST /v1/e HTTP/1.1\r\n"+host+"Content-Length: 5\r\nExpect: magic\r\n\r\nhello")
		if res, _ := read(t, br, "POST"); res.StatusCode != http.StatusExpectationFailed {
			t.Errorf("status %s", res.Status)
		}
	})

	t.Run("chunked with trailer", func(t *testing.T) {
		c, br := open(t)
		io.WriteString(c, "POST /v1/unsized HTTP/1.1\r\n"+host+"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n")
		res, body := read(t, br, "POST")
		if body != "unsized ab" || len(res.TransferEncoding) == 0 {
			t.Errorf("unsized: %q %v", body, res.TransferEncoding)
		}
		io.WriteString(c, "GET /v1/trailer HTTP/1.1\r\n"+host+"\r\n")
		res, body = read(t, br, "GET")
		if body != "with trailer" || res.Trailer.Get("X-Sum") != "42" {
			t.Errorf("trailer: %q %v", body, res.Trailer)
		}
	})

	t.Run("informational responses", func(t *testing.T) {
		// An HTTP/1.1 client is passed the 103 before the answer; an
		// HTTP/1.0 client, which has no such thing, only the answer.
		for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
			c, br := open(t)
			io.WriteString(c, "GET /v1/hints "+proto+"\r\n"+host+"\r\n")
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			hinted := strings.HasPrefix(line, "HTTP/1.1 103 ")
			if hinted != (proto == "HTTP/1.1") {
				t.Errorf("%s client: first line %q", proto, line)
			}
		}
	})

	t.Run("refused while still sending", func(t *testing.T) {
		// The proxy answers 431 after the first part of the header; the
		// client goes on writing, and must still be able to read the
		// answer rather than find the connection reset under it.
		c, br := open(t)
		io.WriteString(c, "GET /v1/x HTTP/1.1\r\n"+host+"X-Big: "+strings.Repeat("a", 80<<10))
		time.Sleep(100 * time.Millisecond)
		if _, err := io.WriteString(c, strings.Repeat("a", 200<<10)+"\r\n\r\n"); err != nil {
			t.Fatalf("the rest of the request: %v", err)
		}
		if res, _ := read(t, br, "GET"); res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %s", res.Status)
		}
	})

	t.Run("bad request", func(t *testing.T) {
		c, br := open(t)
		io.WriteString(c, "GET /v1/x HTTP/1.1\r\n\r\n")
		if res, _ := read(t, br, "GET"); res.StatusCode != http.StatusBadRequest {
			t.Errorf("missing Host: %s", res.Status)
		}
	})
}

// TestClientLeavesSlowRequest checks that a client giving up on a request
// the upstream is slow to answer cancels the upstream exchange, and that
// the event says so.
func TestClientLeavesSlowRequest(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	w := newWorld(t, worldOptions{})
	cancelled := make(chan struct{})
	up := startUpstream(t, pki, false, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(10 * time.Second):
		}
	}), "slow.test")
	authority := fmt.Sprintf("slow.test:%d", up.port)
	w.addProvider(provider.Spec{Name: "slow", BaseURL: "https://" + authority + "/v1", CACert: pki.pemPath})

	tc, err := w.tlsTunnel(authority, "slow.test", "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(tc, "GET /v1/think HTTP/1.1\r\nHost: "+authority+"\r\n\r\n")
	time.Sleep(200 * time.Millisecond) // past the delay before the client is watched
	tc.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream exchange went on after the client left")
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		var last audit.Event
		if evs := w.events.list(); len(evs) > 0 {
			last = evs[len(evs)-1]
		}
		if last.Path == "/v1/think" {
			if last.Status != 499 || !strings.Contains(last.Reason, "went away") {
				t.Errorf("event %+v", last)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event for the request: %+v", w.events.list())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
