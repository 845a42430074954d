// Package goproxypeer is the benchmark's typical Go peer: a minimal
// credential-injecting MITM proxy built on github.com/elazarl/goproxy, set
// up the way a careful user of that library would (HTTP/2 on, a
// certificate cache, a pooled upstream transport). It runs as its own
// process, the benchmark binary started again with "goproxy-peer" as its
// first argument, so that its memory and CPU can be read apart from the
// benchmark's.
//
// It intercepts every CONNECT with a CA of its own, adds
// "Authorization: Bearer <secret>" to requests for hosts under
// --inject-suffix, verifies upstream certificates against --upstream-ca,
// and dials every upstream connection to --upstream, which stands in for
// DNS: the benchmark's host names exist nowhere else.
package goproxypeer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/cordon-dev/cordon/bench/pki"
)

// SecretEnv names the environment variable the secret is read from, so
// that it does not show in the process list.
const SecretEnv = "CORDON_BENCH_SECRET"

// Main runs the peer until its listener fails. Once it listens it prints
// "listening ADDR" on stdout; its CA certificate is then in DIR/ca.pem.
func Main(args []string) error {
	fs := flag.NewFlagSet("goproxy-peer", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := fs.String("upstream", "", "address every upstream connection is dialled to")
	upstreamCA := fs.String("upstream-ca", "", "PEM file with the CA of the upstream's certificate")
	suffix := fs.String("inject-suffix", "", "inject the credential for this host and hosts under it")
	dir := fs.String("dir", "", "directory to write ca.pem into")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret := os.Getenv(SecretEnv)
	if *upstream == "" || *upstreamCA == "" || *suffix == "" || *dir == "" || secret == "" {
		return errors.New("--upstream, --upstream-ca, --inject-suffix, --dir and $" + SecretEnv + " are required")
	}

	roots := x509.NewCertPool()
	pem, err := os.ReadFile(*upstreamCA)
	if err != nil {
		return err
	}
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s holds no certificate", *upstreamCA)
	}
	ca, err := pki.NewAuthority("cordon-bench goproxy peer CA")
	if err != nil {
		return err
	}
	if err := ca.WriteCert(filepath.Join(*dir, "ca.pem")); err != nil {
		return err
	}

	p := newProxy(ca.TLS(), roots, *upstream, strings.TrimPrefix(*suffix, "."), secret)
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", l.Addr())
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	return srv.Serve(l)
}

func newProxy(ca tls.Certificate, roots *x509.CertPool,
	upstream, suffix, secret string) *goproxy.ProxyHttpServer {
	p := goproxy.NewProxyHttpServer()
	p.AllowHTTP2 = true
	p.KeepAcceptEncoding = true
	p.CertStore = &certCache{certs: map[string]*tls.Certificate{}}
	p.Logger = log.New(io.Discard, "", 0)

	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	p.Tr = &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, upstream)
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableCompression:  true,
	}

	mitm := &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: goproxy.TLSConfigFromCA(&ca)}
	p.OnRequest().HandleConnectFunc(func(host string, _ *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		return mitm, host
	})
	p.OnRequest().DoFunc(func(r *http.Request, _ *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		host := strings.ToLower(r.URL.Hostname())
		if host == suffix || strings.HasSuffix(host, "."+suffix) {
			r.Header.Set("Authorization", "Bearer "+secret)
		}
		return r, nil
	})
	return p
}

// certCache keeps one leaf certificate per host for the life of the
// process, which goproxy's documentation recommends; without it every
// CONNECT signs a new certificate.
type certCache struct {
	mu    sync.Mutex
	certs map[string]*tls.Certificate
}

func (c *certCache) Fetch(host string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cert, ok := c.certs[host]; ok {
		return cert, nil
	}
	cert, err := gen()
	if err != nil {
		return nil, err
	}
	c.certs[host] = cert
	return cert, nil
}
