package ca

import (
	"bytes"
	"os"
)

// systemBundles are the places Linux distributions keep the system's
// trusted roots as one PEM file, in the order crypto/x509 reads them.
var systemBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Gentoo, Arch
	"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL 6
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
	"/etc/pki/tls/cacert.pem",                           // OpenELEC
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
	"/etc/ssl/cert.pem",                                 // Alpine
}

// Bundle returns the system's trusted roots followed by cordon's CA
// certificate, for clients that take a single CA file (SSL_CERT_FILE,
// REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE). system reports whether system roots
// were found; without them the bundle trusts cordon's CA alone, so
// intercepted hosts work but bypassed ones do not verify.
func (c *CA) Bundle() (bundle []byte, system bool) {
	var buf bytes.Buffer
	for _, path := range systemBundles {
		data, err := os.ReadFile(path)
		if err != nil || len(data) == 0 {
			continue
		}
		buf.Write(data)
		if !bytes.HasSuffix(data, []byte("\n")) {
			buf.WriteByte('\n')
		}
		system = true
		break
	}
	buf.Write(c.CertPEM())
	return buf.Bytes(), system
}
