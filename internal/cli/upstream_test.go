package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// cmdUpstream starts an HTTPS test server for the scripts:
//
//	upstream [-listen=ADDR] NAME HOST...
//
// The server has its own private CA, written to $WORK/NAME-ca.pem, and a
// certificate for the hosts and 127.0.0.1. Its port goes in $NAME_PORT.
// Each request appends a line to $WORK/NAME.log with the method, path,
// query and the credential headers it carried; the response is that line.
// GET /sse streams five events.
func cmdUpstream(ts *testscript.TestScript, neg bool, args []string) {
	listen := "127.0.0.1:0"
	if len(args) > 0 && strings.HasPrefix(args[0], "-listen=") {
		listen = strings.TrimPrefix(args[0], "-listen=")
		args = args[1:]
	}
	if neg || len(args) < 2 {
		ts.Fatalf("usage: upstream [-listen=ADDR] NAME HOST...")
	}
	name, hosts := args[0], args[1:]
	work := ts.Getenv("WORK")

	caCert, caKey := newScriptCA(ts)
	caPath := filepath.Join(work, name+"-ca.pem")
	ts.Check(os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}), 0o644))
	leaf := issueScriptCert(ts, caCert, caKey, append(hosts, "127.0.0.1"))

	var mu sync.Mutex
	logPath := filepath.Join(work, name+".log")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		line := fmt.Sprintf("%s %s query=%q authorization=%q x-api-key=%q proto=%s\n", r.Method, r.URL.Path,
			r.URL.RawQuery, r.Header.Values("Authorization"), r.Header.Values("X-Api-Key"), r.Proto)
		mu.Lock()
		f, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			f.WriteString(line)
			f.Close()
		}
		mu.Unlock()
		if r.URL.Path == "/sse" {
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 5 {
				fmt.Fprintf(w, "data: event %d\n\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond)
			}
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, line)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	if listen != "127.0.0.1:0" {
		l, err := net.Listen("tcp", listen)
		ts.Check(err)
		srv.Listener.Close()
		srv.Listener = l
	}
	srv.StartTLS()
	ts.Defer(srv.Close)
	ts.Setenv(strings.ToUpper(name)+"_PORT", strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port))
}

func newScriptCA(ts *testscript.TestScript) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ts.Check(err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "script upstream CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	ts.Check(err)
	cert, err := x509.ParseCertificate(der)
	ts.Check(err)
	return cert, key
}

func issueScriptCert(ts *testscript.TestScript, ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ts.Check(err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	ts.Check(err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// cmdWaitFor waits up to 20 seconds for a file to contain a string:
//
//	waitfor FILE TEXT
func cmdWaitFor(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitfor FILE TEXT")
	}
	path := ts.MkAbs(args[0])
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(path); err == nil && strings.Contains(string(data), args[1]) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	data, _ := os.ReadFile(path)
	ts.Fatalf("%s does not contain %q after 20s; it holds:\n%s", args[0], args[1], data)
}

// cmdLoadEnv sets the variables of the "export NAME=VALUE" lines in a file
// (as `cordon proxy` prints them), undoing single-quote shell quoting.
func cmdLoadEnv(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: loadenv FILE")
	}
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	for _, line := range strings.Split(string(data), "\n") {
		line, ok := strings.CutPrefix(line, "export ")
		if !ok {
			continue
		}
		name, value, _ := strings.Cut(line, "=")
		if strings.HasPrefix(value, "'") {
			value = strings.ReplaceAll(strings.Trim(value, "'"), `'\''`, "'")
		}
		ts.Setenv(name, value)
	}
}
