package provider

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseBaseURL(t *testing.T) {
	tests := []struct {
		in      string
		want    Endpoint
		wantErr string
	}{
		{in: "https://llm.example.com/v1", want: Endpoint{"https", "llm.example.com", 443, "/v1"}},
		{in: "https://LLM.Example.com./v1/", want: Endpoint{"https", "llm.example.com", 443, "/v1"}},
		{in: "https://llm.example.com", want: Endpoint{"https", "llm.example.com", 443, ""}},
		{in: "https://llm.example.com/", want: Endpoint{"https", "llm.example.com", 443, ""}},
		{in: "http://127.0.0.1:11434", want: Endpoint{"http", "127.0.0.1", 11434, ""}},
		{in: "http://[::1]:8000/v1", want: Endpoint{"http", "::1", 8000, "/v1"}},
		{in: "https://h.example:8443/a/b%20c", want: Endpoint{"https", "h.example", 8443, "/a/b%20c"}},
		{in: "https://bücher.example/v1", want: Endpoint{"https", "xn--bcher-kva.example", 443, "/v1"}},
		{in: "", wantErr: "empty"},
		{in: "llm.example.com/v1", wantErr: "relative"},
		{in: "/v1", wantErr: "relative"},
		{in: "ftp://llm.example.com", wantErr: "scheme"},
		{in: "https://user:pw@llm.example.com", wantErr: "user information"},
		{in: "https://llm.example.com/v1?key=1", wantErr: "query"},
		{in: "https://llm.example.com/v1?", wantErr: "query"},
		{in: "https://llm.example.com/v1#x", wantErr: "fragment"},
		{in: "https://llm.example.com/v1#", wantErr: "fragment"},
		{in: "https:///v1", wantErr: "no host"},
		{in: "https:llm.example.com", wantErr: "no host"},
		{in: "https://llm.example.com:0", wantErr: "port"},
		{in: "https://llm.example.com:70000", wantErr: "port"},
		{in: "https://llm.example.com:/v1", wantErr: "empty port"},
		{in: "https://llm.example.com/v1/../admin", wantErr: "segments"},
		{in: "https://llm.example.com/v1//x", wantErr: "empty segment"},
		{in: " https://llm.example.com", wantErr: "spaces"},
		{in: "https://llm.example.com/v 1", wantErr: "spaces"},
		{in: "https://llm.example.com/v1\n", wantErr: "spaces"},
		{in: "https://2130706433/v1", wantErr: "numeric"},
	}
	for _, tt := range tests {
		got, err := ParseBaseURL(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseBaseURL(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseBaseURL(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseBaseURL(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestEndpointString(t *testing.T) {
	for _, in := range []string{"https://h.example/v1", "http://[::1]:8000/v1", "http://h.example", "https://h.example:8443"} {
		e, err := ParseBaseURL(in)
		if err != nil {
			t.Fatal(err)
		}
		if e.String() != in {
			t.Errorf("ParseBaseURL(%q).String() = %q", in, e.String())
		}
	}
}

func TestParseHeaderSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    Auth
		wantErr bool
	}{
		{in: "Authorization: Bearer", want: Auth{Kind: AuthHeader, Header: "Authorization", Prefix: "Bearer"}},
		{in: "authorization:bearer", want: Auth{Kind: AuthHeader, Header: "Authorization", Prefix: "bearer"}},
		{in: "x-api-key:", want: Auth{Kind: AuthHeader, Header: "X-Api-Key"}},
		{in: "x-api-key", want: Auth{Kind: AuthHeader, Header: "X-Api-Key"}},
		{in: " Authorization :  Token  ", want: Auth{Kind: AuthHeader, Header: "Authorization", Prefix: "Token"}},
		{in: "", wantErr: true},
		{in: ": Bearer", wantErr: true},
		{in: "Bad Header: x", wantErr: true},
		{in: "X-Key: a\r\nEvil: 1", wantErr: true},
		{in: "X-Key: é", wantErr: true},
		{in: "Host:", wantErr: true},
		{in: "Proxy-Authorization: Basic", wantErr: true},
		{in: "Connection:", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseHeaderSpec(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseHeaderSpec(%q) = %+v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseHeaderSpec(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if again, err := ParseHeaderSpec(got.Spec()); err != nil || again != got {
			t.Errorf("ParseHeaderSpec(%q.Spec()) = %+v, %v", tt.in, again, err)
		}
	}
}

func TestApply(t *testing.T) {
	tests := []struct {
		name      string
		auth      Auth
		header    http.Header
		query     string
		wantHdr   http.Header
		wantQuery string
	}{
		{
			name:    "bearer replaces the client's placeholder",
			auth:    Bearer,
			header:  http.Header{"Authorization": {"Bearer placeholder", "Bearer second"}, "Accept": {"*/*"}},
			wantHdr: http.Header{"Authorization": {"Bearer s3cret"}, "Accept": {"*/*"}},
		},
		{
			name:    "raw header",
			auth:    Auth{Kind: AuthHeader, Header: "X-Api-Key"},
			header:  http.Header{"X-Api-Key": {"placeholder"}},
			wantHdr: http.Header{"X-Api-Key": {"s3cret"}},
		},
		{
			name:    "basic",
			auth:    Auth{Kind: AuthBasic, Header: "Authorization"},
			header:  http.Header{},
			wantHdr: http.Header{"Authorization": {"Basic czNjcmV0"}},
		},
		{
			name:      "query parameter replaced, others kept in order",
			auth:      Auth{Kind: AuthQuery, Param: "key"},
			header:    http.Header{},
			query:     "a=1&key=placeholder&b=2&k%65y=again&key",
			wantHdr:   http.Header{},
			wantQuery: "a=1&b=2&key=s3cret",
		},
		{
			name:      "query parameter added",
			auth:      Auth{Kind: AuthQuery, Param: "key"},
			header:    http.Header{},
			wantHdr:   http.Header{},
			wantQuery: "key=s3cret",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.auth.Apply(tt.header, tt.query, "s3cret")
			if diff := cmp.Diff(tt.wantHdr, tt.header); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
			if q != tt.wantQuery {
				t.Errorf("query = %q, want %q", q, tt.wantQuery)
			}
		})
	}
}

func TestApplyQueryEscapes(t *testing.T) {
	q := Auth{Kind: AuthQuery, Param: "key"}.Apply(http.Header{}, "x=1", "a&b=c d")
	v, err := url.ParseQuery(q)
	if err != nil || v.Get("key") != "a&b=c d" || v.Get("x") != "1" || len(v) != 2 {
		t.Errorf("query %q parses to %v, %v", q, v, err)
	}
}

func TestBuiltins(t *testing.T) {
	seen := map[Endpoint]string{}
	for _, p := range Builtins() {
		if len(p.Endpoints) == 0 || len(p.Env) == 0 || p.Title == "" {
			t.Errorf("%s: incomplete entry %+v", p.Name, p)
		}
		for _, e := range p.Endpoints {
			if e.Scheme != "https" || e.Port != 443 {
				t.Errorf("%s: endpoint %s is not https on 443", p.Name, e)
			}
			if other, dup := seen[e]; dup {
				t.Errorf("%s and %s share %s", p.Name, other, e)
			}
			seen[e] = p.Name
		}
		if !IsBuiltin(p.Name) {
			t.Errorf("IsBuiltin(%q) = false", p.Name)
		}
	}
	for _, want := range []string{"openai", "anthropic", "google", "github", "groq", "mistral", "xai",
		"openrouter", "deepseek", "together", "fireworks", "cerebras", "nebius", "huggingface"} {
		if !IsBuiltin(want) {
			t.Errorf("built-in %s is missing", want)
		}
	}
}

func FuzzParseBaseURL(f *testing.F) {
	for _, s := range []string{"https://llm.example.com/v1", "http://[::1]:8000", "https://a@b/c?d#e", "https://h/%2e%2e/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		e, err := ParseBaseURL(in)
		if err != nil {
			return
		}
		// An accepted base URL round-trips through its string form and
		// covers itself.
		again, err := ParseBaseURL(e.String())
		if err != nil || again != e {
			t.Fatalf("ParseBaseURL(%q) = %+v; its string %q parses to %+v, %v", in, e, e.String(), again, err)
		}
		if e.Scheme != "http" && e.Scheme != "https" || e.Port < 1 || e.Port > 65535 {
			t.Fatalf("ParseBaseURL(%q) = %+v", in, e)
		}
		if !underBase(e.Path+"/x", e.Path) || strings.HasSuffix(e.Path, "/") {
			t.Fatalf("ParseBaseURL(%q): path %q", in, e.Path)
		}
	})
}

func FuzzParseHeaderSpec(f *testing.F) {
	for _, s := range []string{"Authorization: Bearer", "x-api-key:", "a:b:c", "X: \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		a, err := ParseHeaderSpec(in)
		if err != nil {
			return
		}
		// What is accepted must make a valid header line: no control
		// characters, a token name.
		if !isToken(a.Header) || strings.ContainsAny(a.Prefix, "\r\n\x00") {
			t.Fatalf("ParseHeaderSpec(%q) = %+v", in, a)
		}
		h := http.Header{}
		a.Apply(h, "", "secret")
		if got := h.Get(a.Header); !strings.HasSuffix(got, "secret") {
			t.Fatalf("Apply with %+v set %q", a, got)
		}
	})
}
