package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cordon-dev/cordon/bench/pki"
)

// benchDomain is the private name space of the run: every host the
// subjects are asked to reach lies under it and is served by the one
// upstream. The .test top-level domain never resolves publicly.
const benchDomain = "bench.test"

// apiHost is the host of the keep-alive, streaming and bulk measurements.
const apiHost = "api." + benchDomain

// maxStreamEvents bounds what a client may ask the upstream to stream.
const maxStreamEvents = 100_000

// upstream is the OpenAI-shaped HTTPS server every subject ends at. It
// answers for any name under benchDomain over HTTP/1.1 and HTTP/2, with a
// certificate from a CA of its own, and refuses requests that lack the
// credential the subjects are meant to inject.
type upstream struct {
	addr   string // 127.0.0.1:PORT
	port   int
	ca     *pki.Authority
	caPath string
	secret string
	srv    *http.Server

	requests     atomic.Int64
	unauthorized atomic.Int64
}

func startUpstream(dir, secret string) (*upstream, error) {
	ca, err := pki.NewAuthority("cordon-bench upstream CA")
	if err != nil {
		return nil, err
	}
	cert, err := ca.Issue([]string{"*." + benchDomain, benchDomain}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	u := &upstream{ca: ca, caPath: filepath.Join(dir, "upstream-ca.pem"), secret: secret}
	if err := ca.WriteCert(u.caPath); err != nil {
		return nil, err
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u.addr = l.Addr().String()
	u.port = l.Addr().(*net.TCPAddr).Port

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	u.srv = &http.Server{
		Handler:           u.routes(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		// Long enough for the idle-connection measurement, which holds
		// connections through mitmproxy (one upstream connection each).
		IdleTimeout: 10 * time.Minute,
		ErrorLog:    log.New(io.Discard, "", 0),
	}
	go u.srv.ServeTLS(l, "", "")
	return u, nil
}

func (u *upstream) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	u.srv.Shutdown(ctx)
}

// url returns the URL of path on host, at the upstream's port.
func (u *upstream) url(host, path string) string {
	return "https://" + net.JoinHostPort(host, strconv.Itoa(u.port)) + path
}

func (u *upstream) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", u.models)
	mux.HandleFunc("POST /v1/chat/completions", u.chat)
	mux.HandleFunc("GET /bulk", u.bulkDown)
	mux.HandleFunc("POST /bulk", u.bulkUp)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+u.secret {
			u.unauthorized.Add(1)
			writeJSONError(w, http.StatusUnauthorized, "missing or wrong credential")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"message":%q}}`+"\n", msg)
}

// modelsBody is the answer of GET /v1/models: the small request the
// keep-alive and connection measurements repeat.
var modelsBody = []byte(`{"object":"list","data":[{"id":"bench-model","object":"model","created":1700000000,"owned_by":"cordon-bench"}]}` + "\n")

func (u *upstream) models(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(modelsBody)))
	w.Write(modelsBody)
}

// chatRequest is the part of a chat-completions request the upstream
// reads: max_tokens is the number of events to stream.
type chatRequest struct {
	Model     string `json:"model"`
	Stream    bool   `json:"stream"`
	MaxTokens int    `json:"max_tokens"`
}

// intervalHeader sets the pause between two streamed events, as a Go
// duration ("5ms"); the first event goes out at once.
const intervalHeader = "X-Bench-Interval"

// sentField names the send time in each streamed event: Unix nanoseconds
// taken just before the event is written and flushed.
const sentField = `"sent_unix_nano":`

func (u *upstream) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSONError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return
	}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-bench","object":"chat.completion","model":%q,`+
			`"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`+"\n", req.Model)
		return
	}
	events := min(max(req.MaxTokens, 1), maxStreamEvents)
	interval, _ := time.ParseDuration(r.Header.Get(intervalHeader))
	interval = min(max(interval, 0), time.Second)

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	bw := bufio.NewWriterSize(w, 512)
	start := time.Now()
	var timer *time.Timer
	for i := range events {
		if i > 0 && interval > 0 {
			// Pace against the start, so that a late event does not push
			// back all the ones after it.
			wait := time.Until(start.Add(time.Duration(i) * interval))
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(bw, `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","model":%q,`+
			`"choices":[{"index":0,"delta":{"content":"token%d "},"finish_reason":null}],`+sentField+`%d}`+"\n\n",
			req.Model, i, time.Now().UnixNano())
		if bw.Flush() != nil || rc.Flush() != nil {
			return
		}
	}
	io.WriteString(bw, "data: [DONE]\n\n")
	bw.Flush()
}

// bulkBlock is what GET /bulk repeats; not all zeros, so that nothing on
// the way could shortcut it.
var bulkBlock = func() []byte {
	b := make([]byte, 256<<10)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}()

func (u *upstream) bulkDown(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
	if err != nil || n < 0 || n > 16<<30 {
		writeJSONError(w, http.StatusBadRequest, "bytes must be a count up to 16 GiB")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	for n > 0 {
		chunk := bulkBlock[:min(n, int64(len(bulkBlock)))]
		if _, err := w.Write(chunk); err != nil {
			return
		}
		n -= int64(len(chunk))
	}
}

func (u *upstream) bulkUp(w http.ResponseWriter, r *http.Request) {
	buf := make([]byte, 256<<10)
	n, err := io.CopyBuffer(io.Discard, r.Body, buf)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"received":%d}`+"\n", n)
}
