package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The HTTP/1.1 requests inside tunnels are served by the loop in this file
// rather than by net/http's server. That server starts a goroutine for
// every request to watch for the client leaving, with a read that finds
// nothing and a deadline to end it; on a keep-alive load this was a fifth
// of the proxy's CPU. Here one goroutine per connection reads a request,
// hands it to the forwarder and writes the answer, and a client is only
// watched once a request has taken long enough for leaving to matter.
// Requests are still parsed by net/http (http.ReadRequest), with the
// checks its server makes on top.

// clientWatchDelay is how long a request runs before the proxy starts
// watching its client's connection for the client going away, so that a
// slow upstream exchange is cancelled when nobody waits for it any more.
const clientWatchDelay = 50 * time.Millisecond

// maxDrainBytes is how much of a request body the handler left unread is
// read and dropped to keep the connection; past it the connection closes.
const maxDrainBytes = 256 << 10

// lingerTime and maxLingerBytes bound how long and how much a connection
// closed with its request unread goes on reading, so that the client gets
// the response before the connection is gone.
const (
	lingerTime     = 500 * time.Millisecond
	maxLingerBytes = 1 << 20
)

// tunnelServer tracks the HTTP/1.1 connections being served inside
// tunnels, so that Shutdown can close the idle ones and let the others
// finish the response in hand.
type tunnelServer struct {
	p       *Proxy
	ctx     context.Context // what each request's context derives from
	closing atomic.Bool

	mu    sync.Mutex
	conns map[*h1Conn]struct{}
}

func newTunnelServer(p *Proxy) *tunnelServer {
	// A request context that names a server tells the reverse proxy to
	// abandon a response it cannot finish by panicking with
	// http.ErrAbortHandler, which cuts the connection, rather than end
	// it as if it were complete.
	ctx := context.WithValue(context.Background(), http.ServerContextKey, p.h2base)
	return &tunnelServer{p: p, ctx: ctx, conns: map[*h1Conn]struct{}{}}
}

// Connection states, so that Shutdown and the serving goroutine agree on
// who closes an idle connection.
const (
	connActive int32 = iota
	connIdle
	connClosed
)

// serve starts serving conn, the tunnel's TLS connection (or the tunnel
// itself for plain HTTP), and reports false when the proxy is shutting down
// and conn is still the caller's to close. raw is the CONNECT connection
// underneath, untracked when conn closes.
func (s *tunnelServer) serve(conn, raw net.Conn, fw *forwarder) bool {
	c := &h1Conn{s: s, fw: fw, rwc: &innerConn{Conn: conn, raw: raw, p: s.p}}
	c.cr.conn, c.cr.remain = conn, -1
	c.addr = conn.RemoteAddr().String()
	c.cr.cond.L = &c.cr.mu
	if tc, ok := conn.(*tls.Conn); ok {
		state := tc.ConnectionState()
		c.tls = &state
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return false
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	go c.serve()
	return true
}

// shutdown closes the idle connections; the others close once their
// response is written.
func (s *tunnelServer) shutdown() {
	s.closing.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(connIdle, connClosed) {
			c.rwc.Close()
		}
	}
}

// innerConn is a tunnel's connection as its HTTP/1.1 loop sees it; closing
// it closes the tunnel and lets Shutdown know it has ended.
type innerConn struct {
	net.Conn          // the TLS connection, or the tunnel itself for plain HTTP
	raw      net.Conn // the hijacked CONNECT connection underneath
	p        *Proxy
	once     sync.Once
}

func (c *innerConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.raw.Close()
		c.p.untrackTunnel(c.raw)
	})
	return err
}

// h1Conn is one HTTP/1.1 connection inside a tunnel.
type h1Conn struct {
	s     *tunnelServer
	fw    *forwarder
	rwc   *innerConn
	addr  string // the client's address, for Request.RemoteAddr
	tls   *tls.ConnectionState
	cr    connReader
	br    *bufio.Reader
	bw    *bufio.Writer
	state atomic.Int32
	// hijacked: a protocol switch took the connection, its buffers and
	// the closing of it.
	hijacked bool
	// unread: the connection ends with the client's request not read to
	// its end, so closing it at once would reset it under the response.
	unread bool
}

var (
	h1Readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	h1Writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

func (c *h1Conn) serve() {
	defer func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
		if c.hijacked {
			return
		}
		c.br.Reset(nil)
		h1Readers.Put(c.br)
		if c.unread {
			c.lingerClose()
		}
		c.rwc.Close()
	}()
	c.cr.timer = time.AfterFunc(time.Hour, c.cr.watchDue)
	c.cr.timer.Stop()
	c.br = h1Readers.Get().(*bufio.Reader)
	c.br.Reset(&c.cr)
	cfg := &c.s.p.cfg
	wait := cfg.ReadHeaderTimeout // for the first request, which the client has on its way
	for {
		// Waiting for a request: Shutdown may close the connection now,
		// and claims it if it does.
		c.state.Store(connIdle)
		if c.s.closing.Load() && c.state.CompareAndSwap(connIdle, connClosed) {
			return
		}
		c.rwc.SetReadDeadline(time.Now().Add(wait))
		if _, err := c.br.Peek(1); err != nil {
			return
		}
		if !c.state.CompareAndSwap(connIdle, connActive) {
			return
		}
		wait = cfg.IdleTimeout
		c.rwc.SetReadDeadline(time.Now().Add(cfg.ReadHeaderTimeout))
		c.cr.limit(maxHeaderBytes + 4<<10)
		req, err := http.ReadRequest(c.br)
		tooLarge := c.cr.hitLimit()
		c.cr.limit(-1)
		if err != nil {
			c.badRequest(err, tooLarge)
			return
		}
		c.rwc.SetReadDeadline(time.Time{})
		if reason, status := checkRequest(req); status != 0 {
			c.refuse(status, reason)
			return
		}
		if !c.serveRequest(req) {
			return
		}
	}
}

// serveRequest serves one request and reports whether the connection can
// carry another.
func (c *h1Conn) serveRequest(req *http.Request) (keep bool) {
	ctx, cancel := context.WithCancel(c.s.ctx)
	defer cancel()
	req = req.WithContext(ctx)
	req.RemoteAddr = c.addr
	req.TLS = c.tls
	body := &h1Body{src: req.Body, cr: &c.cr}
	if req.Body != http.NoBody {
		req.Body = body
	} else {
		body.eof = true
	}
	w := &h1Response{c: c, req: req, body: body, header: make(http.Header)}
	if expect := req.Header.Get("Expect"); expect != "" {
		if !strings.EqualFold(expect, "100-continue") || !req.ProtoAtLeast(1, 1) {
			c.refuse(http.StatusExpectationFailed, "unsupported Expect header")
			return false
		}
		if req.ContentLength != 0 {
			w.expectContinue = true
			body.sendContinue = w.sendContinue
		}
	}

	c.cr.watch(cancel, body.eof)
	panicked := true
	defer func() {
		if panicked {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				c.s.p.log.Error("panic serving a request", "panic", v, "stack", string(debug.Stack()))
			}
			c.cr.unwatch()
			c.releaseWriter()
			keep = false
		}
	}()
	c.fw.ServeHTTP(w, req)
	panicked = false
	if w.hijacked {
		return false
	}
	c.cr.unwatch()
	keep = w.finish()
	c.releaseWriter()
	if c.cr.clientGone() {
		return false
	}
	return keep && !c.s.closing.Load()
}

func (c *h1Conn) writer() *bufio.Writer {
	if c.bw == nil {
		c.bw = h1Writers.Get().(*bufio.Writer)
		c.bw.Reset(c.rwc)
	}
	return c.bw
}

// releaseWriter returns the write buffer between requests, so that an
// idle connection does not hold one.
func (c *h1Conn) releaseWriter() {
	if c.bw != nil {
		c.bw.Reset(nil)
		h1Writers.Put(c.bw)
		c.bw = nil
	}
}

// checkRequest makes the checks net/http's server makes on a parsed
// request, and says what is wrong with the status to answer.
func checkRequest(req *http.Request) (string, int) {
	if req.ProtoMajor != 1 || req.ProtoMinor > 1 {
		return "unsupported protocol version", http.StatusHTTPVersionNotSupported
	}
	if req.ProtoAtLeast(1, 1) && req.Host == "" && req.Method != http.MethodConnect {
		return "missing required Host header", http.StatusBadRequest
	}
	if req.Host != "" && !httpguts.ValidHostHeader(req.Host) {
		return "malformed Host header", http.StatusBadRequest
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return "invalid header name", http.StatusBadRequest
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return "invalid header value", http.StatusBadRequest
			}
		}
	}
	return "", 0
}

// badRequest answers a request that could not be read, if the client is
// still there to hear it.
func (c *h1Conn) badRequest(err error, tooLarge bool) {
	var ne net.Error
	switch {
	case tooLarge:
		c.refuse(http.StatusRequestHeaderFieldsTooLarge, "")
	case err == io.EOF || errors.Is(err, net.ErrClosed) || errors.As(err, &ne) && ne.Timeout():
		// The client left, or stalled past its time.
	case strings.Contains(err.Error(), "unsupported transfer encoding"):
		c.refuse(http.StatusNotImplemented, "unsupported transfer encoding")
	default:
		c.refuse(http.StatusBadRequest, "")
	}
}

// refuse answers status with a plain-text body and closes the connection.
func (c *h1Conn) refuse(status int, reason string) {
	text := strconv.Itoa(status) + " " + statusText(status)
	if reason != "" {
		text += ": " + reason
	}
	w := c.writer()
	w.WriteString(statusLine(status))
	w.WriteString("Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")
	w.WriteString(text)
	c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	w.Flush()
	c.releaseWriter()
	c.unread = true
}

// lingerClose ends the sending half of the connection and reads what the
// client still sends, for a bounded time and amount. Closing a socket with
// unread input makes the kernel reset it, and a client still writing its
// request would then lose the response already sent to it.
func (c *h1Conn) lingerClose() {
	if tc, ok := c.rwc.Conn.(*tls.Conn); ok {
		tc.SetWriteDeadline(time.Now().Add(lingerTime))
		tc.CloseWrite()
	}
	if hc, ok := c.rwc.raw.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
	}
	c.rwc.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, c.rwc, maxLingerBytes)
}

// statusLine is a response's first line, line ending included.
func statusLine(code int) string {
	return "HTTP/1.1 " + strconv.Itoa(code) + " " + statusText(code) + "\r\n"
}

// statusText is the reason phrase for code, or words that stand in for one.
func statusText(code int) string {
	if text := http.StatusText(code); text != "" {
		return text
	}
	return "status code " + strconv.Itoa(code)
}

// connReader is what the connection's bufio.Reader reads from. It bounds
// the reading of a request's headers, and it can read in the background
// while a request is served to notice the client going away.
type connReader struct {
	conn   net.Conn
	remain int64 // bytes left for the request headers, or -1
	timer  *time.Timer

	mu       sync.Mutex
	cond     sync.Cond
	cancel   context.CancelFunc // the request in hand, if being watched for
	due      bool               // the request has run for clientWatchDelay
	bodyDone bool               // its body has been read to the end
	inRead   bool               // a background read is pending
	aborted  bool               // and the serving goroutine has ended it
	pending  bool               // the background read got b[0]
	gone     bool               // the background read found the client gone
	b        [1]byte
}

var errHeaderLimit = errors.New("request headers too large")

func (cr *connReader) limit(n int64) { cr.remain = n }

func (cr *connReader) hitLimit() bool { return cr.remain == 0 }

func (cr *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	cr.mu.Lock()
	if cr.inRead {
		cr.mu.Unlock()
		return 0, errors.New("read while a background read is pending")
	}
	if cr.pending {
		p[0], cr.pending = cr.b[0], false
		cr.mu.Unlock()
		return 1, nil
	}
	if cr.gone {
		cr.mu.Unlock()
		return 0, io.EOF
	}
	cr.mu.Unlock()
	if cr.remain == 0 {
		return 0, errHeaderLimit
	}
	if cr.remain > 0 && int64(len(p)) > cr.remain {
		p = p[:cr.remain]
	}
	n, err := cr.conn.Read(p)
	if cr.remain > 0 {
		cr.remain -= int64(n)
	}
	return n, err
}

// watch starts the clock on the request in hand; bodyDone is true when it
// has no body to read.
func (cr *connReader) watch(cancel context.CancelFunc, bodyDone bool) {
	cr.mu.Lock()
	cr.cancel, cr.due, cr.bodyDone = cancel, false, bodyDone
	cr.mu.Unlock()
	cr.timer.Reset(clientWatchDelay)
}

func (cr *connReader) watchDue() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	cr.due = true
	cr.startLocked()
}

// bodyEnded is called when the request body has been read to its end, on
// whichever goroutine read it.
func (cr *connReader) bodyEnded() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	cr.bodyDone = true
	cr.startLocked()
}

// startLocked starts the background read once the request has run long
// enough and nothing else needs to read the connection.
func (cr *connReader) startLocked() {
	if cr.cancel == nil || !cr.due || !cr.bodyDone || cr.inRead || cr.pending || cr.gone {
		return
	}
	cr.inRead = true
	go cr.backgroundRead()
}

func (cr *connReader) backgroundRead() {
	n, err := cr.conn.Read(cr.b[:])
	cr.mu.Lock()
	if n == 1 {
		cr.pending = true // the start of the next request, sent early
	}
	var ne net.Error
	if err != nil && !(cr.aborted && errors.As(err, &ne) && ne.Timeout()) {
		cr.gone = true
		if cr.cancel != nil {
			cr.cancel()
		}
	}
	cr.inRead, cr.aborted = false, false
	cr.mu.Unlock()
	cr.cond.Broadcast()
}

// unwatch stops watching the client, ending a background read if one is
// pending, so that the connection can be read again.
func (cr *connReader) unwatch() {
	cr.timer.Stop()
	cr.mu.Lock()
	defer cr.mu.Unlock()
	cr.cancel = nil
	if !cr.inRead {
		return
	}
	cr.aborted = true
	cr.conn.SetReadDeadline(time.Unix(1, 0))
	for cr.inRead {
		cr.cond.Wait()
	}
	cr.conn.SetReadDeadline(time.Time{})
}

func (cr *connReader) clientGone() bool {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return cr.gone
}

// h1Body is a request body as the forwarder sees it. It tells the
// connection when the body has been read to the end, and stops reads once
// the handler has returned, so that the connection's next request is
// never read as this one's body.
type h1Body struct {
	src io.ReadCloser
	cr  *connReader

	mu           sync.Mutex
	eof          bool
	closed       bool
	sendContinue func() // sends 100 Continue before the first read, if due
}

func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.eof {
		return 0, io.EOF
	}
	if b.sendContinue != nil {
		b.sendContinue()
		b.sendContinue = nil
	}
	n, err := b.src.Read(p)
	if err == io.EOF {
		b.eof = true
		b.cr.bodyEnded()
	}
	return n, err
}

// Close leaves the rest of the body for the connection to drain or give
// up on once the handler has returned.
func (b *h1Body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// ended reports whether the body has been read to its end.
func (b *h1Body) ended() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof
}

// drain reads what is left of the body, up to maxDrainBytes, and reports
// whether it reached the end.
func (b *h1Body) drain() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.eof {
		return true
	}
	n, err := io.CopyN(io.Discard, b.src, maxDrainBytes+1)
	return err == io.EOF && n <= maxDrainBytes
}
