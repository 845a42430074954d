package provider

import (
	"testing"
)

func testSet(t *testing.T, specs ...Spec) *Set {
	t.Helper()
	s, err := newSet(specs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMatch(t *testing.T) {
	set := testSet(t,
		Spec{Name: "llm", BaseURL: "https://llm.example.com/v1"},
		Spec{Name: "llm-admin", BaseURL: "https://llm.example.com/v1/admin", Header: "x-admin-key:"},
		Spec{Name: "ollama", BaseURL: "http://127.0.0.1:11434"},
		Spec{Name: "openai-proxy", BaseURL: "https://api.openai.com/proxy"},
	)
	tests := []struct {
		scheme, host string
		port         int
		path         string
		want         string // provider name, "" for none
		reason       Reason
	}{
		{"https", "llm.example.com", 443, "/v1/chat/completions", "llm", ""},
		{"https", "llm.example.com", 443, "/v1", "llm", ""},
		{"https", "llm.example.com", 443, "/v1/", "llm", ""},
		{"https", "llm.example.com", 443, "/v10/chat", "", ReasonPath},
		{"https", "llm.example.com", 443, "/", "", ReasonPath},
		{"https", "llm.example.com", 443, "", "", ReasonPath},
		{"https", "llm.example.com", 443, "/v1/admin/users", "llm-admin", ""},
		{"https", "llm.example.com", 443, "/v1/administrator", "llm", ""},
		{"https", "llm.example.com", 8443, "/v1/chat", "", ReasonPort},
		{"http", "llm.example.com", 443, "/v1/chat", "", ReasonPlainHTTP},
		{"http", "llm.example.com", 80, "/v1/chat", "", ReasonPlainHTTP},
		{"https", "llm.example.com", 443, "/v1/../admin", "", ReasonDotSegments},
		{"https", "llm.example.com", 443, "/v1/%2e%2E/admin", "", ReasonDotSegments},
		{"https", "llm.example.com", 443, "/v1/.", "", ReasonDotSegments},
		{"https", "llm.example.com", 443, "/v1/a%2Fb", "", ReasonDotSegments},
		{"https", "llm.example.com", 443, "/v1/a%5c..", "", ReasonDotSegments},
		{"https", "llm.example.com", 443, "/v1/..foo", "llm", ""},
		{"https", "other.example.com", 443, "/v1/chat", "", ReasonNoProvider},
		{"https", "llm.example.com.evil", 443, "/v1/chat", "", ReasonNoProvider},
		{"https", "evil-llm.example.com", 443, "/v1/chat", "", ReasonNoProvider},
		{"http", "127.0.0.1", 11434, "/api/chat", "ollama", ""},
		{"http", "127.0.0.1", 80, "/api/chat", "", ReasonPort},
		{"https", "127.0.0.1", 11434, "/api/chat", "", ReasonScheme},
		{"https", "api.openai.com", 443, "/v1/models", "openai", ""},
		{"https", "api.openai.com", 443, "/proxy/v1/models", "openai-proxy", ""},
		{"https", "api.openai.com", 443, "/proxyx", "openai", ""},
		{"http", "api.openai.com", 80, "/v1/models", "", ReasonPlainHTTP},
		{"https", "api.anthropic.com", 443, "/v1/messages", "anthropic", ""},
		{"https", "raw.githubusercontent.com", 443, "/o/r/main/f", "github", ""},
		{"https", "openrouter.ai", 443, "/api/v1/chat", "openrouter", ""},
		{"https", "openrouter.ai", 443, "/docs", "", ReasonPath},
	}
	for _, tt := range tests {
		m := set.Match(tt.scheme, tt.host, tt.port, tt.path)
		got := ""
		if m.Provider != nil {
			got = m.Provider.Name
		}
		if got != tt.want || m.Reason != tt.reason {
			t.Errorf("Match(%s://%s:%d%s) = %q (%q), want %q (%q)",
				tt.scheme, tt.host, tt.port, tt.path, got, m.Reason, tt.want, tt.reason)
		}
		if m.Provider == nil && m.Reason != ReasonNoProvider && m.Near == nil {
			t.Errorf("Match(%s://%s:%d%s): no Near provider for reason %q", tt.scheme, tt.host, tt.port, tt.path, m.Reason)
		}
	}
}

func TestNewSetConflicts(t *testing.T) {
	tests := []struct {
		name  string
		specs []Spec
	}{
		{"same name twice", []Spec{
			{Name: "a", BaseURL: "https://a.example"}, {Name: "a", BaseURL: "https://b.example"}}},
		{"same endpoint", []Spec{
			{Name: "a", BaseURL: "https://a.example/v1"}, {Name: "b", BaseURL: "https://A.example/v1/"}}},
		{"built-in endpoint", []Spec{{Name: "a", BaseURL: "https://api.openai.com"}}},
		{"built-in name", []Spec{{Name: "openai", BaseURL: "https://a.example"}}},
	}
	for _, tt := range tests {
		if _, err := newSet(tt.specs); err == nil {
			t.Errorf("%s: newSet accepted %+v", tt.name, tt.specs)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	specs := []Spec{{Name: "llm", BaseURL: "https://llm.example.com/v1"}}
	set, err := newSet(specs)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if m := set.Match("https", "llm.example.com", 443, "/v1/chat/completions"); m.Provider == nil {
			b.Fatal("no match")
		}
	}
}

func FuzzMatch(f *testing.F) {
	f.Add("https", "llm.example.com", 443, "/v1/chat")
	f.Add("http", "llm.example.com", 80, "/v1/%2e%2e/x")
	set, err := newSet([]Spec{
		{Name: "llm", BaseURL: "https://llm.example.com/v1"},
		{Name: "local", BaseURL: "http://10.0.0.5:8000/v1"},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, scheme, host string, port int, path string) {
		m := set.Match(scheme, host, port, path)
		if m.Provider == nil {
			return
		}
		// Whatever the input, a match means the request goes exactly to
		// the endpoint, under its base path, with no dot segments.
		e := m.Endpoint
		if scheme != e.Scheme || host != e.Host || port != e.Port {
			t.Fatalf("Match(%q, %q, %d, %q) matched %s", scheme, host, port, path, e)
		}
		if !underBase(path, e.Path) && !(path == "" && e.Path == "") || hasDotSegment(path) {
			t.Fatalf("Match(%q, %q, %d, %q) matched %s", scheme, host, port, path, e)
		}
	})
}
