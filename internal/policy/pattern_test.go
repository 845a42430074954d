package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseHostPattern(t *testing.T) {
	tests := []struct {
		in      string
		want    HostPattern
		str     string // canonical form; "" means in
		wantErr string // substring of the error
	}{
		{in: "example.com", want: HostPattern{Kind: KindName, Name: "example.com"}},
		{in: "API.OpenAI.com.", want: HostPattern{Kind: KindName, Name: "api.openai.com"}, str: "api.openai.com"},
		{in: "bücher.example", want: HostPattern{Kind: KindName, Name: "xn--bcher-kva.example"}, str: "xn--bcher-kva.example"},
		{in: "example.com:8443", want: HostPattern{Kind: KindName, Name: "example.com", Port: 8443}},
		{in: "*.example.com", want: HostPattern{Kind: KindOneLabel, Name: "example.com"}},
		{in: "**.Example.COM.", want: HostPattern{Kind: KindAnyDepth, Name: "example.com"}, str: "**.example.com"},
		{in: "*.example.com:443", want: HostPattern{Kind: KindOneLabel, Name: "example.com", Port: 443}},
		{in: "*.com", want: HostPattern{Kind: KindOneLabel, Name: "com"}},
		{in: "localhost", want: HostPattern{Kind: KindName, Name: "localhost"}},
		{in: "10.0.0.5", want: HostPattern{Kind: KindAddr, Addr: netip.MustParseAddr("10.0.0.5")}},
		{in: "10.0.0.5:8000", want: HostPattern{Kind: KindAddr, Addr: netip.MustParseAddr("10.0.0.5"), Port: 8000}},
		{in: "2001:DB8::5", want: HostPattern{Kind: KindAddr, Addr: netip.MustParseAddr("2001:db8::5")}, str: "2001:db8::5"},
		{in: "[2001:db8::5]", want: HostPattern{Kind: KindAddr, Addr: netip.MustParseAddr("2001:db8::5")}, str: "2001:db8::5"},
		{in: "[2001:db8::5]:8000", want: HostPattern{Kind: KindAddr, Addr: netip.MustParseAddr("2001:db8::5"), Port: 8000}},
		{in: "::ffff:10.0.0.5", want: HostPattern{Kind: KindAddr, Addr: netip.MustParseAddr("10.0.0.5")}, str: "10.0.0.5"},
		{in: "10.0.0.0/8", want: HostPattern{Kind: KindPrefix, Prefix: netip.MustParsePrefix("10.0.0.0/8")}},
		{in: "fd00::/8", want: HostPattern{Kind: KindPrefix, Prefix: netip.MustParsePrefix("fd00::/8")}},
		{in: "10.0.0.5/32", want: HostPattern{Kind: KindPrefix, Prefix: netip.MustParsePrefix("10.0.0.5/32")}},

		{in: "", wantErr: "empty host pattern"},
		{in: "https://example.com", wantErr: "is a URL"},
		{in: "example.com/path", wantErr: "use --path"},
		{in: "example.com?x", wantErr: "not a URL"},
		{in: "user@example.com", wantErr: "not a URL"},
		{in: "exa mple.com", wantErr: "spaces or control"},
		{in: "example.com\n", wantErr: "spaces or control"},
		{in: "*", wantErr: "whole first label"},
		{in: "**", wantErr: "whole first label"},
		{in: "*.", wantErr: "empty host name"},
		{in: "a.*.example.com", wantErr: "whole first label"},
		{in: "*example.com", wantErr: "whole first label"},
		{in: "***.example.com", wantErr: "whole first label"},
		{in: "*.*.example.com", wantErr: "whole first label"},
		{in: "*.10.0.0.1", wantErr: "wildcard needs a domain name"},
		{in: "**.[::1]", wantErr: "not an IPv6 address"},
		{in: "example.com:", wantErr: "empty port"},
		{in: "example.com:0", wantErr: "invalid port"},
		{in: "example.com:080", wantErr: "invalid port"},
		{in: "example.com:+80", wantErr: "invalid port"},
		{in: "example.com:65536", wantErr: "invalid port"},
		{in: "example.com:http", wantErr: "invalid port"},
		{in: "example..com", wantErr: "invalid host name"},
		{in: "-bad.example", wantErr: "invalid host name"},
		{in: "2130706433", wantErr: "numeric"},
		{in: "0x7f.1", wantErr: "numeric"},
		{in: "[::1", wantErr: "missing ']'"},
		{in: "[::1]x", wantErr: "unexpected"},
		{in: "[example.com]:443", wantErr: "invalid IPv6"},
		{in: "fe80::1%eth0", wantErr: "zones are not accepted"},
		{in: "10.0.0.1/8", wantErr: "did you mean 10.0.0.0/8"},
		{in: "10.0.0.0/33", wantErr: "not a CIDR range"},
		{in: "::ffff:10.0.0.0/104", wantErr: "IPv4 form"},
		{in: "10.0.0.0/8:443", wantErr: "not a CIDR range"},
		{in: "a:b:c", wantErr: "not an IPv6 address"},
	}
	for _, tt := range tests {
		got, err := ParseHostPattern(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseHostPattern(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseHostPattern(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
			cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Errorf("ParseHostPattern(%q) (-want +got):\n%s", tt.in, diff)
		}
		str := tt.str
		if str == "" {
			str = tt.in
		}
		if got.String() != str {
			t.Errorf("ParseHostPattern(%q).String() = %q, want %q", tt.in, got.String(), str)
		}
	}
}

func TestParseHostList(t *testing.T) {
	got, err := ParseHostList("example.com, *.example.org ,10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	var strs []string
	for _, p := range got {
		strs = append(strs, p.String())
	}
	if diff := cmp.Diff([]string{"example.com", "*.example.org", "10.0.0.0/8"}, strs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", ",", "a.example,", ",a.example", "a.example,,b.example", "a.example,bad host"} {
		if _, err := ParseHostList(bad); err == nil {
			t.Errorf("ParseHostList(%q) succeeded", bad)
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern string
		host    string
		port    int
		want    bool
	}{
		{"example.com", "example.com", 443, true},
		{"example.com", "example.com", 1, true},
		{"example.com", "a.example.com", 443, false},
		{"example.com", "evil-example.com", 443, false},
		{"example.com", "example.com.evil", 443, false},
		{"example.com:443", "example.com", 443, true},
		{"example.com:443", "example.com", 80, false},
		{"*.example.com", "a.example.com", 443, true},
		{"*.example.com", "a-b_c.example.com", 443, true},
		{"*.example.com", "a.b.example.com", 443, false},
		{"*.example.com", "example.com", 443, false},
		{"*.example.com", "aexample.com", 443, false},
		{"*.example.com", ".example.com", 443, false},
		{"**.example.com", "a.example.com", 443, true},
		{"**.example.com", "a.b.c.example.com", 443, true},
		{"**.example.com", "example.com", 443, false},
		{"**.example.com", "internal.example.com.evil", 443, false},
		{"**.example.com", "notexample.com", 443, false},
		{"**.example.com:8443", "a.example.com", 443, false},
		{"10.0.0.5", "10.0.0.5", 443, true},
		{"10.0.0.5", "10.0.0.6", 443, false},
		{"10.0.0.5:8000", "10.0.0.5", 8001, false},
		{"10.0.0.0/8", "10.255.0.1", 1, true},
		{"10.0.0.0/8", "11.0.0.1", 1, false},
		{"10.0.0.0/8", "ten.example", 1, false},
		{"2001:db8::/32", "2001:db8::1", 443, true},
		{"2001:db8::5", "2001:db8::5", 443, true},
		{"example.com", "10.0.0.5", 443, false},
	}
	for _, tt := range tests {
		p, err := ParseHostPattern(tt.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Match(tt.host, tt.port); got != tt.want {
			t.Errorf("%s.Match(%s, %d) = %v, want %v", tt.pattern, tt.host, tt.port, got, tt.want)
		}
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct {
		in, want string
		isAddr   bool
		bad      bool
	}{
		{in: "api.openai.com", want: "api.openai.com"},
		{in: "API.OpenAI.com.", want: "api.openai.com"},
		{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{in: "bücher.example", want: "xn--bcher-kva.example"},
		{in: "10.0.0.1", want: "10.0.0.1", isAddr: true},
		{in: "::ffff:10.0.0.1", want: "10.0.0.1", isAddr: true},
		{in: "[2001:DB8::1]", want: "2001:db8::1", isAddr: true},
		{in: "010.0.0.1", bad: true},
		{in: "0x7f.1", bad: true},
		{in: "a b", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		got, ok := canonical(tt.in)
		if ok == tt.bad || !tt.bad && (got.name != tt.want || got.isAddr != tt.isAddr) {
			t.Errorf("canonical(%q) = %+v, %v", tt.in, got, ok)
		}
	}
}

func TestParsePathPattern(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  string
	}{
		{in: "/", want: "/"},
		{in: "/v1", want: "/v1"},
		{in: "/v1/", want: "/v1"},
		{in: "//v1//chat/", want: "/v1/chat"},
		{in: "/v1/*/files", want: "/v1/*/files"},
		{in: "/v1/**", want: "/v1/**"},
		{in: "/**/**/x", want: "/**/x"},
		{in: "/a%20b", want: "/a%20b"},
		{in: "", wantErr: "empty"},
		{in: "v1", wantErr: "start with '/'"},
		{in: "/v1?x=1", wantErr: "query"},
		{in: "/v1#x", wantErr: "query"},
		{in: "/a b", wantErr: "spaces"},
		{in: "/ü", wantErr: "non-ASCII"},
		{in: "/v*", wantErr: "whole segments"},
		{in: "/***", wantErr: "whole segments"},
		{in: "/a/../b", wantErr: "'..'"},
		{in: "/a/./b", wantErr: "'.'"},
		{in: "/a/%2e%2e/b", wantErr: "'..'"},
		{in: "/a%2fb", wantErr: "encoded"},
		{in: "/a\\b", wantErr: "'\\'"},
		{in: "/%zz", wantErr: "percent"},
		{in: "/%2a", wantErr: "encoded '*'"},
		{in: "/" + strings.Repeat("a", 1100), wantErr: "longer"},
	}
	for _, tt := range tests {
		got, err := parsePathPattern(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parsePathPattern(%q) = %q, %v; want an error with %q", tt.in, got.raw, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.raw != tt.want {
			t.Errorf("parsePathPattern(%q) = %q, %v; want %q", tt.in, got.raw, err, tt.want)
		}
	}
}

func TestPathMatch(t *testing.T) {
	tests := []struct {
		pattern, path string
		fold          bool
		want          bool
	}{
		{"/", "/", false, true},
		{"/", "", false, true},
		{"/", "/x", false, false},
		{"/v1", "/v1", false, true},
		{"/v1", "/v1/", false, true},
		{"/v1", "/v1/x", false, false},
		{"/v1", "/v10", false, false},
		{"/v1/*", "/v1/x", false, true},
		{"/v1/*", "/v1", false, false},
		{"/v1/*", "/v1/x/y", false, false},
		{"/v1/**", "/v1", false, true},
		{"/v1/**", "/v1/x/y/z", false, true},
		{"/v1/**", "/v2/x", false, false},
		{"/**/download", "/download", false, true},
		{"/**/download", "/a/b/download", false, true},
		{"/**/download", "/a/b/download/x", false, false},
		{"/a/**/b/**/c", "/a/x/b/y/y/c", false, true},
		{"/a/**/b/**/c", "/a/c/b", false, false},
		{"/*/x/**", "/p/x", false, true},
		{"/Admin", "/admin", false, false},
		{"/Admin", "/admin", true, true},
		{"/a%20b", "/a b", false, true},
		{"/a%20b", "/a%20b", false, true},
		{"/a%2Bb", "/a+b", false, true},
	}
	for _, tt := range tests {
		p, err := parsePathPattern(tt.pattern)
		if err != nil {
			t.Fatal(err)
		}
		r := splitRequestPath(tt.path)
		if got := !r.ambiguous && p.match(r.segs, tt.fold); got != tt.want {
			t.Errorf("%s matching %q (fold %v) = %v, want %v", tt.pattern, tt.path, tt.fold, got, tt.want)
		}
	}
}

// A pattern of many "**" against a long path that almost matches stays
// fast: the matcher never backtracks exponentially.
func TestPathMatchIsNotExponential(t *testing.T) {
	p, err := parsePathPattern("/" + strings.Repeat("**/a/", 30) + "b")
	if err != nil {
		t.Fatal(err)
	}
	path := splitRequestPath("/" + strings.Repeat("a/", 2000) + "c")
	if p.match(path.segs, false) {
		t.Error("matched")
	}
}

func TestParseMethod(t *testing.T) {
	for in, want := range map[string]string{"GET": "GET", "post": "POST", "PROPFIND": "PROPFIND", "M-SEARCH": "M-SEARCH"} {
		if got, err := parseMethod(in); err != nil || got != want {
			t.Errorf("parseMethod(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "GET POST", "GET\n", "G/ET", strings.Repeat("A", 33)} {
		if _, err := parseMethod(in); err == nil {
			t.Errorf("parseMethod(%q) succeeded", in)
		}
	}
}
