package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// clientOptions choose how a measurement's client connects.
type clientOptions struct {
	h2        bool // offer HTTP/2 as well as HTTP/1.1
	keepAlive bool // reuse connections; false opens one per request
	resume    bool // offer TLS session resumption
	// onHandshake, when set, sees the state of every TLS handshake.
	onHandshake func(tls.ConnectionState)
}

// client holds what every measurement needs to reach the upstream through
// one subject.
type client struct {
	s     *subject
	up    *upstream
	roots *x509.CertPool
}

func newClient(s *subject, up *upstream) (*client, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.caPEM) {
		return nil, fmt.Errorf("%s: no CA certificate to trust", s.name)
	}
	return &client{s: s, up: up, roots: roots}, nil
}

func (c *client) tlsConfig(o clientOptions) *tls.Config {
	tc := &tls.Config{RootCAs: c.roots, MinVersion: tls.VersionTLS12}
	if o.resume {
		tc.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	if o.onHandshake != nil {
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			o.onHandshake(cs)
			return nil
		}
	}
	return tc
}

// transport builds an http.Transport for o. The direct subject dials the
// upstream for every name, which stands in for DNS; the others dial their
// proxy and send CONNECT.
func (c *client) transport(o clientOptions) *http.Transport {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(o.h2)
	tr := &http.Transport{
		TLSClientConfig:       c.tlsConfig(o),
		Protocols:             protocols,
		DisableKeepAlives:     !o.keepAlive,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       time.Minute,
		DisableCompression:    true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
	if c.s.proxy != nil {
		tr.Proxy = http.ProxyURL(c.s.proxy)
	} else {
		dialer := &net.Dialer{Timeout: 10 * time.Second}
		addr := c.up.addr
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		}
	}
	return tr
}

// request builds a request to the upstream; the direct subject carries
// the credential itself, the proxies are expected to add it.
func (c *client) request(ctx context.Context, method, host, path string,
	body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.up.url(host, path), body)
	if err != nil {
		return nil, err
	}
	if c.s.proxy == nil {
		req.Header.Set("Authorization", "Bearer "+c.up.secret)
	}
	return req, nil
}

// get sends GET host/path over hc, reads the whole answer and checks the
// status; it returns the protocol the answer came in.
func (c *client) get(ctx context.Context, hc *http.Client, host, path string) (string, error) {
	req, err := c.request(ctx, http.MethodGet, host, path, nil)
	if err != nil {
		return "", err
	}
	res, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", path, res.Status)
	}
	return res.Proto, nil
}

// idleConn opens one connection to the upstream's API host through the
// subject (CONNECT, TLS, one GET /v1/models over HTTP/1.1) and returns it
// open and idle. It speaks the protocol itself so that nothing in the
// client pools or reads it afterwards.
func (c *client) idleConn(ctx context.Context, sessions tls.ClientSessionCache) (net.Conn, error) {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	authority := net.JoinHostPort(apiHost, strconv.Itoa(c.up.port))
	var raw net.Conn
	var err error
	if c.s.proxy == nil {
		raw, err = dialer.DialContext(ctx, "tcp", c.up.addr)
	} else {
		raw, err = dialer.DialContext(ctx, "tcp", c.s.proxy.Host)
	}
	if err != nil {
		return nil, err
	}
	fail := func(err error) (net.Conn, error) {
		raw.Close()
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	raw.SetDeadline(deadline)

	if c.s.proxy != nil {
		head := "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n"
		if u := c.s.proxy.User; u != nil {
			password, _ := u.Password()
			head += "Proxy-Authorization: Basic " +
				base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+password)) + "\r\n"
		}
		if _, err := io.WriteString(raw, head+"\r\n"); err != nil {
			return fail(err)
		}
		br := bufio.NewReaderSize(raw, 512)
		res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return fail(fmt.Errorf("reading the CONNECT answer: %w", err))
		}
		if res.StatusCode != http.StatusOK {
			why, _ := io.ReadAll(io.LimitReader(res.Body, 300))
			return fail(fmt.Errorf("CONNECT: %s: %s", res.Status, bytes.TrimSpace(why)))
		}
		if br.Buffered() > 0 {
			return fail(errors.New("the proxy sent data after its CONNECT answer"))
		}
	}

	tc := c.tlsConfig(clientOptions{})
	tc.ServerName = apiHost
	tc.NextProtos = []string{"http/1.1"}
	tc.ClientSessionCache = sessions
	conn := tls.Client(raw, tc)
	if err := conn.HandshakeContext(ctx); err != nil {
		return fail(fmt.Errorf("TLS: %w", err))
	}

	req := "GET /v1/models HTTP/1.1\r\nHost: " + authority + "\r\n"
	if c.s.proxy == nil {
		req += "Authorization: Bearer " + c.up.secret + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		return fail(err)
	}
	res, err := http.ReadResponse(bufio.NewReaderSize(conn, 1024), nil)
	if err != nil {
		return fail(err)
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil {
		return fail(err)
	}
	if res.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("GET /v1/models: %s", res.Status))
	}
	raw.SetDeadline(time.Time{})
	return conn, nil
}
