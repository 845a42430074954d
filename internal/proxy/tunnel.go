package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/cordon-dev/cordon/internal/audit"
	"github.com/cordon-dev/cordon/internal/hostname"
)

// tunnelConn is a client connection inside an accepted CONNECT. It carries
// the tunnel's target so that the shared TLS configuration can check the
// client's SNI and pick the leaf certificate, and it returns the first
// byte, already read to tell TLS from plain HTTP, before the rest.
type tunnelConn struct {
	net.Conn
	target target
	first  []byte
}

func (c *tunnelConn) Read(b []byte) (int, error) {
	if len(c.first) > 0 && len(b) > 0 {
		n := copy(b, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// errSNIMismatch refuses a TLS client whose server name is not the host it
// asked the proxy to connect to.
type errSNIMismatch struct{ sni, host string }

func (e *errSNIMismatch) Error() string {
	return fmt.Sprintf("TLS server name %q does not match the CONNECT host %q", e.sni, e.host)
}

// serverTLSConfig is shared by every intercepted connection, so that TLS
// session tickets issued on one connection resume on the next.
func (p *Proxy) serverTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		// Called for every ClientHello, resumed or not, so the SNI check
		// cannot be skipped by offering a session ticket.
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			tc, ok := hello.Conn.(*tunnelConn)
			if !ok {
				return nil, errors.New("connection without a tunnel target")
			}
			if hello.ServerName == "" {
				return nil, nil
			}
			sni, err := hostname.Normalize(hello.ServerName)
			if err != nil || sni != tc.target.host {
				return nil, &errSNIMismatch{sni: hello.ServerName, host: tc.target.host}
			}
			return nil, nil
		},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			tc, ok := hello.Conn.(*tunnelConn)
			if !ok {
				return nil, errors.New("connection without a tunnel target")
			}
			return p.cfg.CA.Leaf(tc.target.host)
		},
	}
}

// intercept serves an accepted tunnel: TLS with a leaf for the target
// (or plain HTTP when the client sends no TLS), then HTTP/2 or HTTP/1.1
// requests, each forwarded with the target as its real destination. It
// owns conn, which trackTunnel registered: conn is closed and untracked
// when the tunnel ends, perhaps after intercept has returned.
func (p *Proxy) intercept(conn net.Conn, id Identity, t target, verdict Verdict) {
	owned := true
	defer func() {
		if owned {
			conn.Close()
			p.untrackTunnel(conn)
		}
	}()
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		return
	}

	start := time.Now()
	conn.SetReadDeadline(start.Add(p.cfg.HandshakeTimeout))
	first := make([]byte, 1)
	if _, err := io.ReadFull(conn, first); err != nil {
		return // the client gave up before saying anything
	}
	tc := &tunnelConn{Conn: conn, target: t, first: first}

	if first[0] != 0x16 { // not a TLS handshake record: plain HTTP inside
		t.scheme = "http"
		conn.SetReadDeadline(time.Time{})
		fw := &forwarder{p: p, id: id, target: t, verdict: verdict, tunnel: true}
		owned = !p.h1.serve(tc, conn, fw)
		return
	}

	tlsConn := tls.Server(tc, p.tlsConfig)
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.HandshakeTimeout)
	err := tlsConn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		p.handshakeFailed(id, t, start, err)
		return
	}
	conn.SetReadDeadline(time.Time{})

	fw := &forwarder{p: p, id: id, target: t, verdict: verdict, tunnel: true, intercepted: true}
	if tlsConn.ConnectionState().NegotiatedProtocol == http2.NextProtoTLS {
		p.h2.ServeConn(tlsConn, &http2.ServeConnOpts{BaseConfig: p.h2base, Handler: fw})
		return
	}
	owned = !p.h1.serve(tlsConn, conn, fw)
}

// handshakeFailed records a tunnel whose client TLS handshake failed. A
// client that does not trust cordon's CA ends here, as does one whose SNI
// disagrees with its CONNECT.
func (p *Proxy) handshakeFailed(id Identity, t target, start time.Time, err error) {
	ev := audit.Event{
		Time: start, Sandbox: id.Sandbox, Method: http.MethodConnect, Scheme: t.scheme,
		Host: t.host, Port: t.port, Intercepted: true, Duration: time.Since(start),
		Decision: "error", Reason: "TLS handshake with the client failed: " + err.Error(),
	}
	var mismatch *errSNIMismatch
	if errors.As(err, &mismatch) {
		ev.Decision, ev.Reason = "deny", mismatch.Error()
	}
	p.record(&ev)
}

// bypass tunnels a connection to its target without looking inside: no
// interception, no credential. The address checks still apply.
func (p *Proxy) bypass(w http.ResponseWriter, r *http.Request, id Identity, t target, ev *audit.Event, v Verdict) {
	ev.Decision = "bypass"
	up, err := p.upstream.dial(r.Context(), id.Sandbox, t)
	if err != nil {
		status, decision := dialErrorStatus(err)
		p.refuse(w, ev, status, decision, err.Error())
		return
	}
	defer up.Close()

	conn, err := hijack(w)
	if err != nil {
		return
	}
	if !p.trackTunnel(conn) {
		conn.Close()
		return
	}
	defer p.untrackTunnel(conn)
	defer conn.Close()
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		return
	}

	sent, received := splice(conn, up)
	ev.Status, ev.BytesIn, ev.BytesOut = http.StatusOK, sent, received
	ev.Reason = v.Reason
	ev.Duration = time.Since(ev.Time)
	p.record(ev)
}

// splice copies both ways until both directions are done, passing on
// half-closes, and returns the bytes client→upstream and upstream→client.
func splice(client, upstream net.Conn) (sent, received int64) {
	var wg sync.WaitGroup
	wg.Go(func() {
		sent, _ = io.Copy(upstream, client)
		closeWrite(upstream)
	})
	received, _ = io.Copy(client, upstream)
	closeWrite(client)
	wg.Wait()
	return sent, received
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
