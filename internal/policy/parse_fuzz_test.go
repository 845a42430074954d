package policy

import (
	"strings"
	"testing"

	"github.com/cordon-dev/cordon/internal/hostname"
)

// FuzzParseHostList: a list parses to patterns that each read back to
// themselves, or fails as a whole.
func FuzzParseHostList(f *testing.F) {
	for _, s := range []string{"a.example.com", "a.example.com, *.b.example.com:443", "10.0.0.0/8,,x", " ,", "[::1]:80,**.x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		patterns, err := ParseHostList(s)
		if err != nil {
			return
		}
		if len(patterns) != strings.Count(s, ",")+1 {
			t.Fatalf("%q gave %d patterns", s, len(patterns))
		}
		for _, p := range patterns {
			back, err := ParseHostPattern(p.String())
			if err != nil || back.String() != p.String() {
				t.Fatalf("%q: pattern %q reads back as %q, %v", s, p, back, err)
			}
		}
	})
}

// FuzzParseCheckURL: an accepted URL gives an http or https scheme, a
// normalised host, a port in range and a path that starts with "/".
func FuzzParseCheckURL(f *testing.F) {
	for _, s := range []string{"https://api.openai.com/v1/models", "http://[::1]:8080", "https://x", "ftp://x/", "https://a b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		scheme, host, port, path, err := ParseCheckURL(raw)
		if err != nil {
			return
		}
		if scheme != "http" && scheme != "https" {
			t.Fatalf("%q: scheme %q", raw, scheme)
		}
		if norm, err := hostname.Normalize(host); err != nil || norm != host {
			t.Fatalf("%q: host %q is not normalised (%q, %v)", raw, host, norm, err)
		}
		if port < 1 || port > 65535 {
			t.Fatalf("%q: port %d", raw, port)
		}
		if !strings.HasPrefix(path, "/") {
			t.Fatalf("%q: path %q", raw, path)
		}
	})
}
