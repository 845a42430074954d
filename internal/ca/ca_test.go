package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadOrCreateNew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "ca")
	before := time.Now()
	c, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()

	modes := []struct {
		path string
		want fs.FileMode
	}{
		{dir, fs.ModeDir | 0o700},
		{filepath.Join(dir, KeyFile), 0o600},
		{filepath.Join(dir, CertFile), 0o644},
	}
	for _, tt := range modes {
		info, err := os.Stat(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode(); got != tt.want {
			t.Errorf("mode of %s = %v, want %v", tt.path, got, tt.want)
		}
	}

	if got, want := c.CertPath(), filepath.Join(dir, CertFile); got != want {
		t.Errorf("CertPath() = %q, want %q", got, want)
	}
	onDisk, err := os.ReadFile(c.CertPath())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, c.CertPEM()) {
		t.Error("CertPEM() differs from the certificate file")
	}

	cert := c.Certificate()
	if !cert.IsCA || !cert.BasicConstraintsValid {
		t.Errorf("IsCA = %v, BasicConstraintsValid = %v; want both true", cert.IsCA, cert.BasicConstraintsValid)
	}
	if cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
		t.Errorf("MaxPathLen = %d, MaxPathLenZero = %v; want 0, true", cert.MaxPathLen, cert.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; cert.KeyUsage != want {
		t.Errorf("KeyUsage = %v, want %v", cert.KeyUsage, want)
	}
	if len(cert.SubjectKeyId) != 20 {
		t.Errorf("SubjectKeyId = %x, want 20 bytes", cert.SubjectKeyId)
	}
	if !strings.HasPrefix(cert.Subject.CommonName, "cordon local CA ") {
		t.Errorf("CommonName = %q, want the prefix %q", cert.Subject.CommonName, "cordon local CA ")
	}
	if n := cert.SerialNumber.BitLen(); n < 120 || cert.SerialNumber.Sign() <= 0 {
		t.Errorf("serial %x has %d bits, want a positive serial of at least 120", cert.SerialNumber, n)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key is %T, want an ECDSA P-256 key", cert.PublicKey)
	}
	checkWithin(t, "NotBefore", cert.NotBefore, before.Add(-time.Hour), after.Add(-time.Hour))
	checkWithin(t, "NotAfter", cert.NotAfter, before.Add(caLifetime), after.Add(caLifetime))

	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key file does not hold a PKCS #8 PEM block:\n%s", keyPEM)
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		t.Errorf("key file: %v", err)
	}
}

// checkWithin reports an error unless lo <= got <= hi, at the one-second
// precision of certificate times.
func checkWithin(t *testing.T, what string, got, lo, hi time.Time) {
	t.Helper()
	if got.Before(lo.Truncate(time.Second)) || got.After(hi) {
		t.Errorf("%s = %v, want between %v and %v", what, got, lo, hi)
	}
}

func TestLoadOrCreateReload(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := snapshot(t, dir)

	second, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.CertPEM(), second.CertPEM()) {
		t.Error("reloading gave a different certificate")
	}
	if !first.key.Public().(*ecdsa.PublicKey).Equal(second.key.Public()) {
		t.Error("reloading gave a different key")
	}
	if diff := cmp.Diff(files, snapshot(t, dir)); diff != "" {
		t.Errorf("reloading changed the files (-before +after):\n%s", diff)
	}
}

func TestLoadOrCreateDistinctInstallations(t *testing.T) {
	a, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if a.Certificate().Subject.String() == b.Certificate().Subject.String() {
		t.Errorf("two installations share the subject %q", a.Certificate().Subject)
	}
}

func TestLoadOrCreateRestrictsKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, KeyFile)
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("key mode after loading = %v, want 0600", got)
	}
}

func TestLoadOrCreateConcurrentGoroutines(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	pems := make([][]byte, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			c, err := LoadOrCreate(dir)
			errs[i] = err
			if err == nil {
				pems[i] = c.CertPEM()
			}
		})
	}
	close(start)
	wg.Wait()

	onDisk, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("goroutine %d: %v", i, errs[i])
			continue
		}
		if !bytes.Equal(pems[i], onDisk) {
			t.Errorf("goroutine %d got a certificate other than the one on disk", i)
		}
	}
}

// Environment variables that turn TestLoadOrCreateHelperProcess into a child
// of TestLoadOrCreateConcurrentProcesses.
const (
	helperDirEnv   = "CORDON_CA_TEST_HELPER_DIR"
	helperStartEnv = "CORDON_CA_TEST_HELPER_START"
)

var fingerprintLine = regexp.MustCompile(`(?m)^fingerprint: ([0-9a-f]{64})$`)

func TestLoadOrCreateConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several processes")
	}
	dir := t.TempDir()

	// The children wait for a common moment, so that their LoadOrCreate
	// calls overlap rather than follow their staggered starts.
	const n = 6
	start := time.Now().Add(500 * time.Millisecond).UnixNano()
	cmds := make([]*exec.Cmd, n)
	outs := make([]*bytes.Buffer, n)
	for i := range n {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLoadOrCreateHelperProcess$", "-test.v")
		cmd.Env = append(os.Environ(),
			helperDirEnv+"="+dir,
			helperStartEnv+"="+strconv.FormatInt(start, 10))
		outs[i] = new(bytes.Buffer)
		cmd.Stdout = outs[i]
		cmd.Stderr = outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}

	onDisk, err := func() ([]byte, error) {
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				return nil, fmt.Errorf("process %d: %v\n%s", i, err, outs[i])
			}
		}
		return os.ReadFile(filepath.Join(dir, CertFile))
	}()
	if err != nil {
		t.Fatal(err)
	}
	want := fingerprint(t, onDisk)
	for i, out := range outs {
		m := fingerprintLine.FindSubmatch(out.Bytes())
		if m == nil {
			t.Errorf("process %d printed no fingerprint:\n%s", i, out)
			continue
		}
		if got := string(m[1]); got != want {
			t.Errorf("process %d loaded certificate %s, want %s (the one on disk)", i, got, want)
		}
	}
}

// TestLoadOrCreateHelperProcess is run as a child process by
// TestLoadOrCreateConcurrentProcesses and is skipped otherwise.
func TestLoadOrCreateHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("runs only as a child of TestLoadOrCreateConcurrentProcesses")
	}
	start, err := strconv.ParseInt(os.Getenv(helperStartEnv), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(time.Unix(0, start)))

	c, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("fingerprint: %s\n", fingerprint(t, c.CertPEM()))
}

// fingerprint returns the SHA-256 of the certificate in certPEM, in hex.
func fingerprint(t *testing.T, certPEM []byte) string {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatalf("no PEM block in %q", certPEM)
	}
	sum := sha256.Sum256(block.Bytes)
	return hex.EncodeToString(sum[:])
}

func TestLoadOrCreateBadFiles(t *testing.T) {
	// Material for the cases: a second, unrelated CA, a CA that expired, and
	// a certificate that is not a CA at all.
	other, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherKey := readFile(t, filepath.Join(other.dir, KeyFile))
	expiredCert, expiredKey, err := generate(time.Now().Add(-caLifetime - 24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := other.Leaf("leaf.example")
	if err != nil {
		t.Fatal(err)
	}
	leafCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]})
	leafKeyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	leafKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: leafKeyDER})

	tests := []struct {
		name   string
		change func(t *testing.T, certPath, keyPath string)
		// wantIn lists the files whose paths the error must name, and
		// wantMsg a phrase that says what is wrong.
		wantIn  []string
		wantMsg string
	}{
		{
			name:    "certificate missing",
			change:  func(t *testing.T, certPath, _ string) { remove(t, certPath) },
			wantIn:  []string{CertFile, KeyFile},
			wantMsg: "does not",
		},
		{
			name:    "key missing",
			change:  func(t *testing.T, _, keyPath string) { remove(t, keyPath) },
			wantIn:  []string{CertFile, KeyFile},
			wantMsg: "does not",
		},
		{
			name:    "certificate empty",
			change:  func(t *testing.T, certPath, _ string) { write(t, certPath, nil) },
			wantIn:  []string{CertFile},
			wantMsg: "empty",
		},
		{
			name:    "key empty",
			change:  func(t *testing.T, _, keyPath string) { write(t, keyPath, []byte("\n")) },
			wantIn:  []string{KeyFile},
			wantMsg: "empty",
		},
		{
			name:    "certificate truncated",
			change:  func(t *testing.T, certPath, _ string) { truncate(t, certPath) },
			wantIn:  []string{CertFile},
			wantMsg: "truncated",
		},
		{
			name:    "key truncated",
			change:  func(t *testing.T, _, keyPath string) { truncate(t, keyPath) },
			wantIn:  []string{KeyFile},
			wantMsg: "truncated",
		},
		{
			name: "certificate not PEM",
			change: func(t *testing.T, certPath, _ string) {
				write(t, certPath, []byte("this is not a certificate\n"))
			},
			wantIn:  []string{CertFile},
			wantMsg: "not a PEM file",
		},
		{
			name: "certificate with a bad base64 character",
			change: func(t *testing.T, certPath, _ string) {
				data := readFile(t, certPath)
				data[len(data)/2] = '*'
				write(t, certPath, data)
			},
			wantIn:  []string{CertFile},
			wantMsg: "malformed",
		},
		{
			name: "certificate signature damaged",
			change: func(t *testing.T, certPath, _ string) {
				changeDER(t, certPath, func(der []byte) { der[len(der)-1] ^= 0x01 })
			},
			wantIn:  []string{CertFile},
			wantMsg: "self-signed",
		},
		{
			name: "certificate name damaged",
			change: func(t *testing.T, certPath, _ string) {
				changeDER(t, certPath, func(der []byte) {
					i := bytes.Index(der, []byte("cordon local CA"))
					if i < 0 {
						t.Fatal("no subject in the certificate")
					}
					der[i] = 'C'
				})
			},
			wantIn:  []string{CertFile},
			wantMsg: "self-signed",
		},
		{
			name: "certificate followed by another",
			change: func(t *testing.T, certPath, _ string) {
				write(t, certPath, append(readFile(t, certPath), other.CertPEM()...))
			},
			wantIn:  []string{CertFile},
			wantMsg: "unexpected data",
		},
		{
			name: "key of another CA",
			change: func(t *testing.T, _, keyPath string) {
				write(t, keyPath, otherKey)
			},
			wantIn:  []string{CertFile, KeyFile},
			wantMsg: "does not belong",
		},
		{
			name: "certificate in the key file",
			change: func(t *testing.T, certPath, keyPath string) {
				write(t, keyPath, readFile(t, certPath))
			},
			wantIn:  []string{KeyFile},
			wantMsg: `"CERTIFICATE"`,
		},
		{
			name: "not a CA",
			change: func(t *testing.T, certPath, keyPath string) {
				write(t, certPath, leafCert)
				write(t, keyPath, leafKey)
			},
			wantIn:  []string{CertFile},
			wantMsg: "not a CA",
		},
		{
			name: "expired",
			change: func(t *testing.T, certPath, keyPath string) {
				write(t, certPath, expiredCert)
				write(t, keyPath, expiredKey)
			},
			wantIn:  []string{CertFile},
			wantMsg: "expired",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreate(dir); err != nil {
				t.Fatal(err)
			}
			tt.change(t, filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
			before := snapshot(t, dir)

			c, err := LoadOrCreate(dir)
			if err == nil {
				t.Fatalf("LoadOrCreate succeeded with %s", c.Certificate().Subject)
			}
			for _, name := range tt.wantIn {
				if path := filepath.Join(dir, name); !strings.Contains(err.Error(), path) {
					t.Errorf("error does not name %s: %v", path, err)
				}
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error does not say %q: %v", tt.wantMsg, err)
			}
			if diff := cmp.Diff(before, snapshot(t, dir)); diff != "" {
				t.Errorf("LoadOrCreate changed the files (-before +after):\n%s", diff)
			}
		})
	}
}

func TestLoadOrCreateDirIsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "file")
	write(t, path, []byte("x"))
	if _, err := LoadOrCreate(path); err == nil {
		t.Fatal("LoadOrCreate succeeded on a regular file")
	}
}

// snapshot returns the contents of the CA's files in dir, with absent files
// marked as such.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := make(map[string]string)
	for _, name := range []string{CertFile, KeyFile} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			files[name] = "(absent)"
		case err != nil:
			t.Fatal(err)
		default:
			files[name] = string(data)
		}
	}
	return files
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, path string) {
	t.Helper()
	data := readFile(t, path)
	write(t, path, data[:len(data)/2])
}

// changeDER applies change to the DER bytes of the PEM file at path.
func changeDER(t *testing.T, path string, change func(der []byte)) {
	t.Helper()
	block, _ := pem.Decode(readFile(t, path))
	if block == nil {
		t.Fatalf("no PEM block in %s", path)
	}
	change(block.Bytes)
	write(t, path, pem.EncodeToMemory(block))
}
