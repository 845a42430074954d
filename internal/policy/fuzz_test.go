package policy

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/cordon-dev/cordon/internal/hostname"
)

func FuzzParseHostPattern(f *testing.F) {
	for _, s := range []string{
		"example.com", "API.example.com.", "*.example.com", "**.example.com:8443", "bücher.example",
		"10.0.0.5:8000", "[2001:db8::1]:443", "::ffff:10.0.0.1", "10.0.0.0/8", "fd00::/8",
		"*.10.0.0.1", "[::1", "a:b", "https://x", "example.com:080",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := ParseHostPattern(in)
		if err != nil {
			return
		}
		// The canonical form reads back to the same pattern, and holds
		// nothing that could change its meaning in a file, a table or a
		// log line.
		s := p.String()
		again, err := ParseHostPattern(s)
		if err != nil || again != p {
			t.Fatalf("ParseHostPattern(%q) = %+v, String %q reads back as %+v, %v", in, p, s, again, err)
		}
		if strings.ContainsAny(s, " \t\r\n,?#@\\\"") || strings.ToLower(s) != s {
			t.Fatalf("canonical form %q of %q holds a forbidden character", s, in)
		}
		if p.Port < 0 || p.Port > 65535 || p.Kind == KindPrefix && p.Port != 0 {
			t.Fatalf("port %d in %+v", p.Port, p)
		}
	})
}

func FuzzMatchHost(f *testing.F) {
	for _, s := range [][2]string{
		{"example.com", "example.com"},
		{"*.example.com", "a.example.com"},
		{"**.example.com", "a.b.example.com"},
		{"**.example.com", "internal.example.com.evil"},
		{"*.example.com", "evil-example.com"},
		{"10.0.0.0/8", "10.1.2.3"},
		{"example.com:443", "EXAMPLE.com."},
	} {
		f.Add(s[0], s[1], 443)
	}
	f.Fuzz(func(t *testing.T, pattern, host string, port int) {
		p, err := ParseHostPattern(pattern)
		if err != nil {
			return
		}
		h, ok := canonical(host)
		if !ok {
			return
		}
		if !p.Match(h.name, port) {
			return
		}
		// A match respects the port and, for names, the label boundary.
		if p.Port != 0 && p.Port != port {
			t.Fatalf("%s matched %s at port %d", p, h.name, port)
		}
		switch p.Kind {
		case KindName:
			if h.name != p.Name {
				t.Fatalf("%s matched %s", p, h.name)
			}
		case KindOneLabel, KindAnyDepth:
			below, found := strings.CutSuffix(h.name, "."+p.Name)
			if !found || below == "" {
				t.Fatalf("%s matched %s, which is not below %s", p, h.name, p.Name)
			}
			if p.Kind == KindOneLabel && strings.Contains(below, ".") {
				t.Fatalf("%s matched %s, more than one label below", p, h.name)
			}
		case KindAddr, KindPrefix:
			if !h.isAddr || !p.MatchAddr(h.addr) {
				t.Fatalf("%s matched %s, which is not an address it covers", p, h.name)
			}
		}

		// The view's indexed matching agrees with the pattern's own.
		v := NewView(testPolicy(t, DenyAll, "allow "+p.String()), nil, nil)
		if d := v.Connect("", host, port); d.Action != Allow {
			t.Fatalf("pattern %s matches %s:%d, but Connect says %v", p, host, port, d)
		}
	})
}

// isCanonicalName, the allocation-free fast path, agrees with
// hostname.Normalize: whatever it accepts, Normalize returns unchanged.
func FuzzCanonicalName(f *testing.F) {
	for _, s := range []string{"api.openai.com", "a.b", "x_y.example", "0x1f.example", "example.0x", "1.2.3.4", "a-.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if !isCanonicalName(host) {
			return
		}
		got, err := hostname.Normalize(host)
		if err != nil || got != host {
			t.Fatalf("isCanonicalName(%q), but Normalize = %q, %v", host, got, err)
		}
		if _, err := netip.ParseAddr(host); err == nil {
			t.Fatalf("isCanonicalName accepted the address %q", host)
		}
	})
}

func FuzzPathPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"/v1/**", "/v1/chat/completions"},
		{"/v1/*/files", "/v1/x/files"},
		{"/**/download", "/a/b/download"},
		{"/admin", "/%61dmin"},
		{"/a/**/b/**/c", "/a/../b/c"},
		{"/", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		p, err := parsePathPattern(pattern)
		if err != nil {
			return
		}
		again, err := parsePathPattern(p.raw)
		if err != nil || again.raw != p.raw {
			t.Fatalf("parsePathPattern(%q) = %q, which reads back as %q, %v", pattern, p.raw, again.raw, err)
		}

		r := splitRequestPath(path)
		exact, folded := p.match(r.segs, false), p.match(r.segs, true)
		if exact && !folded {
			t.Fatalf("%s matches %q exactly but not ignoring case", p.raw, path)
		}
		// A pattern without wildcards matches exactly its own segments.
		if !strings.Contains(p.raw, "*") && exact {
			if strings.Join(r.segs, "/") != strings.Join(p.segs, "/") {
				t.Fatalf("%s matched %q", p.raw, path)
			}
		}
		// "/**" matches every unambiguous path.
		if all, _ := parsePathPattern("/**"); !all.match(r.segs, false) {
			t.Fatalf("/** does not match %q", path)
		}
	})
}

func FuzzPolicyFile(f *testing.F) {
	f.Add([]byte(`{"version": 1, "preset": "balanced", "rules": [{"id": "a1b2c3d4", "action": "allow", "host": "*.example.com", "method": "GET", "path": "/v1/**", "created": "2025-01-02T03:04:05Z"}]}`))
	f.Add([]byte(`{"version": 1, "preset": "deny-all", "rules": [{"id": "x", "action": "bypass", "host": "10.0.0.0/8", "sandbox": "dev"}]}`))
	f.Add([]byte(`{"version": 1, "preset": "allow-all"}`))
	f.Add([]byte(`{"version": 2}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodeFile("policy.json", data)
		if err != nil {
			return
		}
		// What was read writes back to a file that reads the same.
		out, err := p.encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeFile("policy.json", out)
		if err != nil {
			t.Fatalf("re-reading %s: %v", out, err)
		}
		a, _ := json.Marshal(p.Rules)
		b, _ := json.Marshal(again.Rules)
		if !bytes.Equal(a, b) || p.Preset != again.Preset {
			t.Fatalf("round trip changed the policy:\n%s\n%s", a, b)
		}
		// And it evaluates without trouble.
		NewView(p, nil, nil).Connect("sandbox", "example.com", 443)
	})
}
