package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/cordon-dev/cordon/internal/audit"
)

// connCount is the number of client connections one sandbox holds open,
// shared by every listener served for it.
type connCount struct {
	open atomic.Int64

	// Refusals are recorded at most once a second; the others in between
	// are counted into the next record.
	lastReport atomic.Int64 // Unix nanoseconds
	unreported atomic.Int64
}

// connCount returns the counter for a sandbox, creating it on first use.
func (p *Proxy) connCount(sandbox string) *connCount {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.conns[sandbox]
	if !ok {
		c = &connCount{}
		p.conns[sandbox] = c
	}
	return c
}

// limitListener admits at most cfg.MaxConns connections of one sandbox at
// a time. A connection past the limit is refused with a 503 written by the
// listener itself, so that a flood of connections holds no server
// goroutine and cannot starve the ones already admitted.
type limitListener struct {
	net.Listener
	p     *Proxy
	id    Identity
	count *connCount
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.count.open.Add(1) <= int64(l.p.cfg.MaxConns) {
			return &countedConn{Conn: c, count: l.count}, nil
		}
		l.count.open.Add(-1)
		l.p.tooManyConns(l.id, l.count)
		// The goroutines that answer refusals are bounded too; past
		// that, a refused connection is closed without an answer.
		select {
		case l.p.refusing <- struct{}{}:
			go func() {
				defer func() { <-l.p.refusing }()
				refuseConn(c, l.p.cfg.MaxConns)
			}()
		default:
			c.Close()
		}
	}
}

// countedConn gives its place back when it is closed, once.
type countedConn struct {
	net.Conn
	count  *connCount
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.count.open.Add(-1)
	}
	return c.Conn.Close()
}

// CloseWrite passes a half-close on to the connection underneath, which a
// blind tunnel relies on.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// refuseConn answers a connection over the limit and closes it. The
// request is not read first: whatever it was, the answer is the same.
func refuseConn(c net.Conn, limit int) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	body := fmt.Sprintf("cordon: too many connections from this sandbox (limit %d); close some and retry\n", limit)
	fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Connection: close\r\nRetry-After: 1\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	// Read what the client sent before closing, so that the close does
	// not reset the connection before the client has read the answer.
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}
}

// tooManyConns records a refused connection, or counts it into the next
// record when one was made less than a second ago.
func (p *Proxy) tooManyConns(id Identity, count *connCount) {
	now := time.Now()
	last := count.lastReport.Load()
	if now.UnixNano()-last < int64(time.Second) || !count.lastReport.CompareAndSwap(last, now.UnixNano()) {
		count.unreported.Add(1)
		return
	}
	reason := fmt.Sprintf("too many connections from this sandbox (limit %d)", p.cfg.MaxConns)
	if n := count.unreported.Swap(0); n > 0 {
		reason += fmt.Sprintf("; %d more refused since the last report", n)
	}
	p.record(&audit.Event{
		Time: now, Sandbox: id.Sandbox, Status: http.StatusServiceUnavailable,
		Decision: audit.DecisionError, Reason: reason,
	})
}
