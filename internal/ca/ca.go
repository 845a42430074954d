// Package ca holds cordon's local certificate authority: a key pair created
// on first use and kept in cordon's data directory, and the leaf certificates
// it signs on the fly for the hosts whose TLS connections the proxy
// intercepts.
//
// The CA's key is the one secret that lets its holder impersonate any host to
// a sandbox that trusts it. It is generated locally, never shipped, stored
// 0600 in a 0700 directory and never handed to the sandbox; only the
// certificate is.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/cordon-dev/cordon/internal/state"
)

// File names inside the CA's directory.
const (
	CertFile = "ca.pem"     // the certificate, PEM, mode 0644
	KeyFile  = "ca-key.pem" // the private key, PKCS #8 PEM, mode 0600
)

const (
	// caLifetime is how long a new CA stays valid. Users install the
	// certificate in places cordon cannot update, so it should outlive the
	// installation.
	caLifetime = 10 * 365 * 24 * time.Hour

	// backdate moves NotBefore into the past so that a peer whose clock runs
	// a little behind still accepts a fresh certificate.
	backdate = time.Hour

	// DefaultLeafCacheSize is how many leaf certificates a CA keeps. Each
	// takes about 4 KiB of memory with its key and parsed form, so a full
	// cache holds about 16 MiB.
	DefaultLeafCacheSize = 4096
)

// errNoCA reports that neither of the CA's files exists.
var errNoCA = errors.New("no CA")

// errHalfCA reports that one of the CA's two files exists without the other.
// Outside the creation lock it may only mean another process is writing them.
var errHalfCA = errors.New("incomplete")

// CA is cordon's local certificate authority. It is safe for concurrent use.
// A CA is obtained from LoadOrCreate; the zero value is not usable.
type CA struct {
	dir     string
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer

	// now is the clock used for validity periods and cache expiry; tests
	// replace it.
	now func() time.Time

	// leafCacheSize bounds the leaf cache; zero or less disables it. It
	// must be set before the CA is shared.
	leafCacheSize int
	leaves        leafCache
	flight        singleflight.Group
	minted        atomic.Uint64
	hits          atomic.Uint64

	// testHookMint, when set, runs just before a leaf is minted.
	testHookMint func()
}

// LoadOrCreate loads the CA kept in dir (files ca.pem and ca-key.pem),
// creating dir (0700) and a new CA on first use.
//
// Creation is serialised by a file lock, so processes that start at once end
// up sharing one CA. Existing files are never replaced: when only one of the
// two exists, when either cannot be parsed, when the key does not belong to
// the certificate, or when the certificate is not a valid, self-signed CA,
// LoadOrCreate returns an error naming the file and leaves both untouched.
// A key file readable by group or others is restricted to its owner.
func LoadOrCreate(dir string) (*CA, error) {
	// The certificate's path is handed to sandboxes, which do not share the
	// caller's working directory.
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("loading CA: %w", err)
	}
	if err := state.EnsureDir(dir); err != nil {
		return nil, fmt.Errorf("loading CA: %w", err)
	}

	// The common case, an existing CA, needs no lock: both files are written
	// by rename, so each one is either absent or complete.
	c, err := load(dir)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, errNoCA) && !errors.Is(err, errHalfCA) {
		return nil, err
	}

	// Another process may be creating the CA right now; wait for it and look
	// again before deciding to create one.
	unlock, err := state.Lock(filepath.Join(dir, "ca"))
	if err != nil {
		return nil, fmt.Errorf("creating CA: %w", err)
	}
	defer unlock()
	c, err = load(dir)
	if !errors.Is(err, errNoCA) {
		return c, err
	}
	return create(dir)
}

// CertPath returns the absolute path of the CA's certificate file, the file
// to add to a trust store.
func (c *CA) CertPath() string {
	return filepath.Join(c.dir, CertFile)
}

// CertPEM returns the CA's certificate in PEM form. The caller must not
// modify the slice.
func (c *CA) CertPEM() []byte {
	return c.certPEM
}

// Certificate returns the CA's parsed certificate. The caller must not
// modify it.
func (c *CA) Certificate() *x509.Certificate {
	return c.cert
}

// LeafStats reports how many leaf certificates the CA has minted (one key
// generation each) and how many Leaf calls were answered from the cache.
// Callers that waited for another caller's mint of the same host count as
// neither.
func (c *CA) LeafStats() (minted, hits uint64) {
	return c.minted.Load(), c.hits.Load()
}

// load reads the CA from dir. It returns errNoCA when neither file exists and
// an error wrapping errHalfCA when only one does.
func load(dir string) (*CA, error) {
	certPath := filepath.Join(dir, CertFile)
	keyPath := filepath.Join(dir, KeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	certMissing := errors.Is(certErr, fs.ErrNotExist)
	keyMissing := errors.Is(keyErr, fs.ErrNotExist)

	switch {
	case certMissing && keyMissing:
		return nil, errNoCA
	case certMissing:
		// The key is written first, so a lone key is what an interrupted
		// creation leaves. No one can have trusted it yet.
		return nil, fmt.Errorf("loading CA: %w: %s exists but %s does not; "+
			"if an earlier cordon was interrupted while creating the CA, remove %s",
			errHalfCA, keyPath, certPath, keyPath)
	case keyMissing:
		return nil, fmt.Errorf("loading CA: %w: %s exists but its key %s does not; "+
			"restore the key, or remove %s and trust the new CA that cordon creates",
			errHalfCA, certPath, keyPath, certPath)
	case certErr != nil:
		return nil, fmt.Errorf("loading CA: %w", certErr)
	case keyErr != nil:
		return nil, fmt.Errorf("loading CA: %w", keyErr)
	}

	if err := restrictKeyFile(keyPath); err != nil {
		return nil, fmt.Errorf("loading CA: %w", err)
	}
	return parse(dir, certPEM, keyPEM)
}

// parse builds a CA from the contents of its two files and checks that they
// belong together.
func parse(dir string, certPEM, keyPEM []byte) (*CA, error) {
	certPath := filepath.Join(dir, CertFile)
	keyPath := filepath.Join(dir, KeyFile)

	certDER, err := decodePEM(certPEM, "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("loading CA certificate %s: %w", certPath, err)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("loading CA certificate %s: %w", certPath, err)
	}
	if err := checkCA(cert); err != nil {
		return nil, fmt.Errorf("loading CA certificate %s: %w", certPath, err)
	}

	keyDER, err := decodePEM(keyPEM, "PRIVATE KEY")
	if err != nil {
		return nil, fmt.Errorf("loading CA key %s: %w", keyPath, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("loading CA key %s: %w", keyPath, err)
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("loading CA key %s: a %T cannot sign", keyPath, parsed)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("loading CA: key %s does not belong to certificate %s", keyPath, certPath)
	}

	return &CA{
		dir:           dir,
		cert:          cert,
		certPEM:       certPEM,
		key:           key,
		now:           time.Now,
		leafCacheSize: DefaultLeafCacheSize,
	}, nil
}

// checkCA reports why cert cannot serve as cordon's CA, if it cannot.
func checkCA(cert *x509.Certificate) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return errors.New("not a CA certificate")
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("not allowed to sign certificates")
	}
	// The sandbox trusts this certificate on its own, so it must be a root.
	// Checking its signature also catches a damaged file whose fields still
	// parse.
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return fmt.Errorf("not a valid self-signed certificate: %w", err)
	}
	if time.Now().After(cert.NotAfter) {
		return fmt.Errorf("expired on %s; remove it and its key to create a new CA",
			cert.NotAfter.Format(time.DateOnly))
	}
	return nil
}

// decodePEM returns the DER bytes of the single PEM block of type want in
// data. Anything but white space around the block is an error, so that a
// truncated or concatenated file is not half read.
func decodePEM(data []byte, want string) ([]byte, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("file is empty")
	}
	if !bytes.HasPrefix(data, []byte("-----BEGIN ")) {
		return nil, errors.New("not a PEM file")
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("malformed or truncated PEM %s block", want)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("unexpected data after the PEM block")
	}
	if block.Type != want {
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, want)
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("PEM block has headers (is the key encrypted?)")
	}
	return block.Bytes, nil
}

// restrictKeyFile makes the key file readable by its owner only, if it is
// not already.
func restrictKeyFile(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("restricting %s to its owner: %w", path, err)
	}
	return nil
}

// create makes a new CA and writes it to dir. The caller holds the creation
// lock and has checked that neither file exists.
func create(dir string) (*CA, error) {
	certPEM, keyPEM, err := generate(time.Now())
	if err != nil {
		return nil, fmt.Errorf("creating CA: %w", err)
	}

	// The key goes first: a crash between the two writes then leaves a key
	// that nobody trusts yet, rather than a trusted certificate whose key
	// is lost.
	if err := state.WriteFile(filepath.Join(dir, KeyFile), keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("creating CA: %w", err)
	}
	if err := state.WriteFile(filepath.Join(dir, CertFile), certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("creating CA: %w", err)
	}
	return parse(dir, certPEM, keyPEM)
}

// generate makes a new CA key and self-signed certificate, valid from an
// hour before now for caLifetime, and returns both in PEM form.
func generate(now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	skid, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}

	// A random suffix tells one installation's CA from another's in a trust
	// store listing, without putting the host name into the sandbox.
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, nil, err
	}
	name := pkix.Name{
		Organization: []string{"cordon"},
		CommonName:   "cordon local CA " + hex.EncodeToString(suffix),
	}

	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               name,
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Only leaves below this CA: a certificate it signs can never sign
		// another that a client would accept.
		MaxPathLen:     0,
		MaxPathLenZero: true,
		SubjectKeyId:   skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// randomSerial returns a serial number of 127 random bits with the 128th bit
// set, so that every serial is exactly 128 bits long and positive.
func randomSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	b[0] |= 0x80
	return new(big.Int).SetBytes(b), nil
}

// subjectKeyID derives a key identifier from the public key: the leftmost
// 160 bits of the SHA-256 of the encoded point (RFC 7093, section 2, method
// 1).
func subjectKeyID(pub *ecdsa.PublicKey) ([]byte, error) {
	point, err := pub.Bytes()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(point)
	return sum[:20], nil
}
