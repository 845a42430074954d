package ca

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseFiles: whatever the CA files hold, parse either builds a CA
// whose certificate is a CA certificate or fails, and its error never
// quotes the key file.
func FuzzParseFiles(f *testing.F) {
	dir := f.TempDir()
	if _, err := LoadOrCreate(dir); err != nil {
		f.Fatal(err)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		f.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(certPEM, keyPEM)
	f.Add(keyPEM, certPEM)
	f.Add(certPEM[:len(certPEM)/2], keyPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), []byte{})
	f.Fuzz(func(t *testing.T, cert, key []byte) {
		c, err := parse("/nonexistent", cert, key)
		if err != nil {
			if len(key) >= 16 && bytes.Contains([]byte(err.Error()), key[:16]) {
				t.Fatalf("the error quotes the key file: %v", err)
			}
			return
		}
		if !c.Certificate().IsCA {
			t.Fatal("parsed a CA whose certificate is not a CA")
		}
	})
}
