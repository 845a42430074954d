package policy

import (
	"strings"
	"testing"
)

func TestConnect(t *testing.T) {
	providers := testProviders(t,
		"my-llm=https://llm.internal.example.com/v1",
		"local=http://10.0.0.5:8000/v1",
	)
	type want struct {
		action   Action
		source   Source
		rule     string // rule ID, "preset", or "" for none
		deferred bool
	}
	allowPreset := want{Allow, SourcePreset, "preset", false}
	refused := want{Deny, SourceDefault, "", false}
	tests := []struct {
		name    string
		preset  Preset
		rules   []string
		sandbox string
		host    string
		port    int
		want    want
	}{
		// The balanced preset.
		{name: "built-in provider", preset: Balanced, host: "api.openai.com", port: 443, want: allowPreset},
		{name: "upper case and trailing dot", preset: Balanced, host: "API.OpenAI.com.", port: 443, want: allowPreset},
		{name: "built-in provider on another port", preset: Balanced, host: "api.openai.com", port: 8443, want: refused},
		{name: "package registry any port", preset: Balanced, host: "registry.npmjs.org", port: 80, want: allowPreset},
		{name: "unknown host", preset: Balanced, host: "evil.example", port: 443, want: refused},
		{name: "github content host", preset: Balanced, host: "objects.githubusercontent.com", port: 443, want: allowPreset},
		{name: "one label only", preset: Balanced, host: "a.b.githubusercontent.com", port: 443, want: refused},
		{name: "wildcard not the apex", preset: Balanced, host: "githubusercontent.com", port: 443, want: refused},
		{name: "suffix confusion preset", preset: Balanced, host: "registry.npmjs.org.evil", port: 443, want: refused},
		{name: "path-limited preset entry", preset: Balanced, host: "storage.googleapis.com", port: 443,
			want: want{Allow, SourcePreset, "preset", true}},
		{name: "registered provider", preset: Balanced, host: "llm.internal.example.com", port: 443,
			want: want{Allow, SourceProvider, "", false}},
		{name: "registered provider other port", preset: Balanced, host: "llm.internal.example.com", port: 8443, want: refused},
		{name: "registered provider by address", preset: DenyAll, host: "10.0.0.5", port: 8000,
			want: want{Allow, SourceProvider, "", false}},
		{name: "registered provider address other port", preset: DenyAll, host: "10.0.0.5", port: 8001, want: refused},

		// The other presets.
		{name: "deny-all refuses built-ins", preset: DenyAll, host: "api.openai.com", port: 443, want: refused},
		{name: "deny-all keeps registered providers", preset: DenyAll, host: "llm.internal.example.com", port: 443,
			want: want{Allow, SourceProvider, "", false}},
		{name: "allow-all", preset: AllowAll, host: "evil.example", port: 443, want: want{Allow, SourcePreset, "", false}},
		{name: "allow-all and a deny", preset: AllowAll, rules: []string{"deny evil.example"}, host: "evil.example",
			port: 443, want: want{Deny, SourceRule, "r1", false}},

		// Exact names and suffix confusion.
		{name: "exact", preset: DenyAll, rules: []string{"allow example.com"}, host: "example.com", port: 443,
			want: want{Allow, SourceRule, "r1", false}},
		{name: "exact is not a suffix", preset: DenyAll, rules: []string{"allow example.com"}, host: "evil-example.com",
			port: 443, want: refused},
		{name: "exact is not a prefix", preset: DenyAll, rules: []string{"allow example.com"}, host: "example.com.evil",
			port: 443, want: refused},
		{name: "exact covers no subdomain", preset: DenyAll, rules: []string{"allow example.com"}, host: "a.example.com",
			port: 443, want: refused},
		{name: "internal suffix confusion", preset: DenyAll, rules: []string{"allow **.example.com"},
			host: "internal.example.com.evil", port: 443, want: refused},
		{name: "IDN", preset: DenyAll, rules: []string{"allow bücher.example"}, host: "BÜCHER.example.", port: 443,
			want: want{Allow, SourceRule, "r1", false}},
		{name: "IDN punycode", preset: DenyAll, rules: []string{"allow bücher.example"}, host: "xn--bcher-kva.example",
			port: 443, want: want{Allow, SourceRule, "r1", false}},

		// Wildcard depth.
		{name: "one label", preset: DenyAll, rules: []string{"allow *.example.com"}, host: "a.example.com", port: 443,
			want: want{Allow, SourceRule, "r1", false}},
		{name: "one label not two", preset: DenyAll, rules: []string{"allow *.example.com"}, host: "a.b.example.com",
			port: 443, want: refused},
		{name: "one label not apex", preset: DenyAll, rules: []string{"allow *.example.com"}, host: "example.com",
			port: 443, want: refused},
		{name: "any depth", preset: DenyAll, rules: []string{"allow **.example.com"}, host: "a.b.c.example.com",
			port: 443, want: want{Allow, SourceRule, "r1", false}},
		{name: "any depth not apex", preset: DenyAll, rules: []string{"allow **.example.com"}, host: "example.com",
			port: 443, want: refused},
		{name: "any depth on label boundary", preset: DenyAll, rules: []string{"allow **.example.com"},
			host: "notexample.com", port: 443, want: refused},

		// Ports.
		{name: "port rule", preset: DenyAll, rules: []string{"allow example.com:8443"}, host: "example.com", port: 8443,
			want: want{Allow, SourceRule, "r1", false}},
		{name: "port rule other port", preset: DenyAll, rules: []string{"allow example.com:8443"}, host: "example.com",
			port: 443, want: refused},

		// Deny wins.
		{name: "deny beats allow", preset: DenyAll, rules: []string{"allow **.example.com", "deny bad.example.com"},
			host: "bad.example.com", port: 443, want: want{Deny, SourceRule, "r2", false}},
		{name: "deny leaves the rest", preset: DenyAll, rules: []string{"allow **.example.com", "deny bad.example.com"},
			host: "good.example.com", port: 443, want: want{Allow, SourceRule, "r1", false}},
		{name: "wide deny beats narrow allow", preset: DenyAll, rules: []string{"allow api.example.com", "deny **.example.com"},
			host: "api.example.com", port: 443, want: want{Deny, SourceRule, "r2", false}},
		{name: "deny beats preset", preset: Balanced, rules: []string{"deny registry.npmjs.org"},
			host: "registry.npmjs.org", port: 443, want: want{Deny, SourceRule, "r1", false}},
		{name: "deny beats provider", preset: Balanced, rules: []string{"deny llm.internal.example.com"},
			host: "llm.internal.example.com", port: 443, want: want{Deny, SourceRule, "r1", false}},
		{name: "deny on one port", preset: AllowAll, rules: []string{"deny example.com:80"}, host: "example.com",
			port: 443, want: want{Allow, SourcePreset, "", false}},

		// Sandboxes.
		{name: "sandbox rule applies to its sandbox", preset: DenyAll, rules: []string{"allow foo.example @a"},
			sandbox: "a", host: "foo.example", port: 443, want: want{Allow, SourceRule, "r1", false}},
		{name: "sandbox rule does not leak", preset: DenyAll, rules: []string{"allow foo.example @a"},
			sandbox: "b", host: "foo.example", port: 443, want: refused},
		{name: "sandbox rule not for no sandbox", preset: DenyAll, rules: []string{"allow foo.example @a"},
			host: "foo.example", port: 443, want: refused},
		{name: "sandbox deny does not leak", preset: Balanced, rules: []string{"deny registry.npmjs.org @a"},
			sandbox: "b", host: "registry.npmjs.org", port: 443, want: allowPreset},
		{name: "global deny beats sandbox allow", preset: DenyAll,
			rules: []string{"deny foo.example", "allow foo.example @a"}, sandbox: "a", host: "foo.example", port: 443,
			want: want{Deny, SourceRule, "r1", false}},

		// Addresses.
		{name: "address and port", preset: DenyAll, rules: []string{"allow 10.0.0.7:8000"}, host: "10.0.0.7", port: 8000,
			want: want{Allow, SourceRule, "r1", false}},
		{name: "address other port", preset: DenyAll, rules: []string{"allow 10.0.0.7:8000"}, host: "10.0.0.7", port: 8001,
			want: refused},
		{name: "mapped address", preset: DenyAll, rules: []string{"allow 10.0.0.7"}, host: "::ffff:10.0.0.7", port: 1,
			want: want{Allow, SourceRule, "r1", false}},
		{name: "range", preset: DenyAll, rules: []string{"allow 10.0.0.0/8"}, host: "10.20.30.40", port: 22,
			want: want{Allow, SourceRule, "r1", false}},
		{name: "v6 range", preset: DenyAll, rules: []string{"allow 2001:db8::/32"}, host: "[2001:DB8::1]", port: 443,
			want: want{Allow, SourceRule, "r1", false}},
		{name: "range matches no name", preset: DenyAll, rules: []string{"allow 10.0.0.0/8"}, host: "ten.example",
			port: 443, want: refused},

		// Bypass.
		{name: "bypass", preset: DenyAll, rules: []string{"bypass pinned.example.com"}, host: "pinned.example.com",
			port: 443, want: want{Bypass, SourceRule, "r1", false}},
		{name: "deny beats bypass", preset: DenyAll, rules: []string{"bypass **.example.com", "deny pinned.example.com"},
			host: "pinned.example.com", port: 443, want: want{Deny, SourceRule, "r2", false}},
		{name: "bypass beats allow", preset: DenyAll, rules: []string{"allow pinned.example.com", "bypass pinned.example.com"},
			host: "pinned.example.com", port: 443, want: want{Bypass, SourceRule, "r2", false}},
		{name: "bypass of a provider host is ignored", preset: Balanced, rules: []string{"bypass **.openai.com"},
			host: "api.openai.com", port: 443, want: want{Allow, SourceRule, "r1", false}},
		{name: "bypass with path deny rules is ignored", preset: DenyAll,
			rules: []string{"bypass pinned.example.com", "deny pinned.example.com /admin/**"},
			host:  "pinned.example.com", port: 443, want: want{Allow, SourceRule, "r1", true}},

		// Method and path rules.
		{name: "path allow defers", preset: DenyAll, rules: []string{"allow api.example.com GET /v1/**"},
			host: "api.example.com", port: 443, want: want{Allow, SourceRule, "r1", true}},
		{name: "path deny defers", preset: DenyAll, rules: []string{"allow api.example.com", "deny api.example.com /admin/**"},
			host: "api.example.com", port: 443, want: want{Allow, SourceRule, "r1", true}},
		{name: "path deny alone refuses", preset: DenyAll, rules: []string{"deny api.example.com /admin/**"},
			host: "api.example.com", port: 443, want: refused},

		// Invalid hosts.
		{name: "invalid host", preset: AllowAll, host: "a b.example", port: 443, want: refused},
		{name: "numeric last label", preset: AllowAll, host: "2130706433", port: 443, want: refused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewView(testPolicy(t, tt.preset, tt.rules...), providers, nil)
			d := v.Connect(tt.sandbox, tt.host, tt.port)
			got := want{d.Action, d.Source, ruleID(d), d.Deferred}
			if got != tt.want {
				t.Errorf("Connect(%q, %q, %d) = %+v (%s), want %+v", tt.sandbox, tt.host, tt.port, got, d.Reason(), tt.want)
			}
			if d.Reason() == "" {
				t.Error("empty reason")
			}
		})
	}
}

func TestRequest(t *testing.T) {
	providers := testProviders(t, "my-llm=https://llm.internal.example.com/v1")
	rules := []string{
		"allow api.example.com GET /v1/**",            // r1
		"allow api.example.com POST /v1/chat/*",       // r2
		"allow shop.example.com",                      // r3
		"deny shop.example.com /admin/**",             // r4
		"deny shop.example.com POST",                  // r5
		"allow files.example.com /public/*/download",  // r6
		"deny llm.internal.example.com /v1/files/**",  // r7
		"allow sandboxed.example.com /ok/** @a",       // r8
		"bypass pinned.example.com",                   // r9
		"deny pinned.example.com DELETE",              // r10
		"allow exact.example.com /",                   // r11
		"allow esc.example.com /a%20b",                // r12
		"deny storage.googleapis.com /evil-bucket/**", // r13
	}
	v := NewView(testPolicy(t, Balanced, rules...), providers, nil)
	tests := []struct {
		sandbox, host, method, path string
		action                      Action
		rule                        string
	}{
		{"", "api.example.com", "GET", "/v1/models", Allow, "r1"},
		{"", "api.example.com", "get", "/v1/models", Allow, "r1"},
		{"", "api.example.com", "GET", "/v1", Allow, "r1"},
		{"", "api.example.com", "GET", "/v2/models", Deny, ""},
		{"", "api.example.com", "DELETE", "/v1/models", Deny, ""},
		{"", "api.example.com", "POST", "/v1/chat/completions", Allow, "r2"},
		{"", "api.example.com", "POST", "/v1/chat/completions/x", Deny, ""},
		{"", "api.example.com", "GET", "/V1/models", Deny, ""}, // allow rules keep case
		{"", "api.example.com", "GET", "/v1/../admin", Deny, ""},

		{"", "shop.example.com", "GET", "/", Allow, "r3"},
		{"", "shop.example.com", "GET", "/catalog", Allow, "r3"},
		{"", "shop.example.com", "GET", "/admin", Deny, "r4"},
		{"", "shop.example.com", "GET", "/admin/users", Deny, "r4"},
		{"", "shop.example.com", "GET", "/ADMIN/users", Deny, "r4"},
		{"", "shop.example.com", "GET", "/%61dmin/users", Deny, "r4"},
		{"", "shop.example.com", "GET", "//admin//users", Deny, "r4"},
		{"", "shop.example.com", "GET", "/admin?x=1", Deny, "r4"},
		{"", "shop.example.com", "GET", "/public/../admin/users", Deny, ""},
		{"", "shop.example.com", "GET", "/public/%2e%2e/admin", Deny, ""},
		{"", "shop.example.com", "GET", "/x%2fadmin", Deny, ""},
		{"", "shop.example.com", "GET", "/bad%zz", Deny, ""},
		{"", "shop.example.com", "POST", "/catalog", Deny, "r5"},
		{"", "shop.example.com", "post", "/catalog", Deny, "r5"},

		{"", "files.example.com", "GET", "/public/x/download", Allow, "r6"},
		{"", "files.example.com", "GET", "/public/x/y/download", Deny, ""},
		{"", "files.example.com", "GET", "/public/download", Deny, ""},

		{"", "llm.internal.example.com", "POST", "/v1/chat/completions", Allow, ""},
		{"", "llm.internal.example.com", "POST", "/v1/files/upload", Deny, "r7"},

		{"a", "sandboxed.example.com", "GET", "/ok/1", Allow, "r8"},
		{"b", "sandboxed.example.com", "GET", "/ok/1", Deny, ""},

		{"", "pinned.example.com", "GET", "/", Allow, "r9"},
		{"", "pinned.example.com", "DELETE", "/x", Deny, "r10"},

		{"", "exact.example.com", "GET", "/", Allow, "r11"},
		{"", "exact.example.com", "GET", "", Allow, "r11"},
		{"", "exact.example.com", "GET", "/x", Deny, ""},

		{"", "esc.example.com", "GET", "/a%20b", Allow, "r12"},
		{"", "esc.example.com", "GET", "/a b", Allow, "r12"},

		{"", "storage.googleapis.com", "GET", "/proxy-golang-org-prod/abc-golang.org:x-v1.zip", Allow, "preset"},
		{"", "storage.googleapis.com", "GET", "/other-bucket/object", Deny, ""},
		{"", "storage.googleapis.com", "GET", "/evil-bucket/object", Deny, "r13"},
	}
	for _, tt := range tests {
		d := v.Request(tt.sandbox, tt.host, 443, tt.method, tt.path)
		if d.Action != tt.action || ruleID(d) != tt.rule {
			t.Errorf("Request(%q, %s %s %s) = %s by %q (%s), want %s by %q",
				tt.sandbox, tt.method, tt.host, tt.path, d.Action, ruleID(d), d.Reason(), tt.action, tt.rule)
		}
	}
}

func TestReasons(t *testing.T) {
	providers := testProviders(t, "my-llm=https://llm.internal.example.com/v1")
	p := testPolicy(t, Balanced,
		"deny **.evil.example",
		"bypass pinned.example.com",
		"bypass api.openai.com",
		"allow api.example.com GET /v1/**",
	)
	v := NewView(p, providers, nil)
	tests := []struct {
		d    Decision
		want string
	}{
		{v.Connect("", "a.evil.example", 443), "denied by rule r1 (deny **.evil.example)"},
		{v.Connect("", "nothing.example", 443), "no rule allows nothing.example"},
		{v.Connect("", "pinned.example.com", 443), "bypassed by rule r2 (bypass pinned.example.com): tunnelled without interception"},
		{v.Connect("", "api.openai.com", 443), "bypass rule r3 ignored: provider openai serves api.openai.com, so the connection is intercepted to inject its credential"},
		{v.Connect("", "registry.npmjs.org", 443), "allowed by the balanced preset (allow registry.npmjs.org)"},
		{v.Connect("", "llm.internal.example.com", 443), "allowed as the host of provider my-llm"},
		{v.Connect("", "api.example.com", 443), "allowed for requests that match rule r4 (allow api.example.com GET /v1/**); each request is checked"},
		{v.Request("", "api.example.com", 443, "POST", "/v1/x"), "no rule allows POST /v1/x on api.example.com"},
		{v.Connect("", "bad host", 443), `invalid host "bad host"`},
		{NewView(testPolicy(t, AllowAll), nil, nil).Connect("", "x.example", 443), "allowed by the allow-all preset"},
	}
	for _, tt := range tests {
		if got := tt.d.Reason(); got != tt.want {
			t.Errorf("Reason() = %q, want %q", got, tt.want)
		}
	}
	if d := v.Connect("", "api.openai.com", 443); !d.BypassIgnored || d.Provider == nil || d.Provider.Name != "openai" {
		t.Errorf("bypass of a provider host: %+v", d)
	}
}

// A decision's reason never carries characters that could forge a log
// line or a header, even for a hostile host.
func TestReasonIsOneLine(t *testing.T) {
	v := NewView(testPolicy(t, DenyAll), nil, nil)
	d := v.Connect("", "evil\r\nX-Injected: 1", 443)
	if strings.ContainsAny(d.Reason(), "\r\n") {
		t.Errorf("reason %q spans lines", d.Reason())
	}
}

func TestCheckBypass(t *testing.T) {
	providers := testProviders(t, "my-llm=https://llm.internal.example.com/v1", "local=http://10.0.0.5:8000")
	tests := []struct {
		pattern  string
		provider string // "" when the bypass is fine
	}{
		{"pinned.example.com", ""},
		{"api.openai.com", "openai"},
		{"api.openai.com:8443", "openai"},
		{"*.openai.com", "openai"},
		{"**.githubusercontent.com", "github"},
		{"*.example.com", ""},
		{"**.example.com", "my-llm"},
		{"llm.internal.example.com", "my-llm"},
		{"10.0.0.5", "local"},
		{"10.0.0.0/8", "local"},
		{"10.0.0.6", ""},
		{"openai.com", ""},
	}
	for _, tt := range tests {
		p, err := ParseHostPattern(tt.pattern)
		if err != nil {
			t.Fatal(err)
		}
		err = CheckBypass(p, providers)
		var got string
		if e, ok := err.(*CredentialHostError); ok {
			got = e.Provider.Name
		} else if err != nil {
			t.Fatalf("CheckBypass(%s): %v", tt.pattern, err)
		}
		if got != tt.provider {
			t.Errorf("CheckBypass(%s) refused for %q, want %q", tt.pattern, got, tt.provider)
		}
	}
}

func TestEngineSeesChanges(t *testing.T) {
	dir := t.TempDir()
	store := OpenStore(dir)
	other := OpenStore(dir) // another process's view of the same file
	e := NewEngine(store, nil)

	v1, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	if d := v1.Connect("", "new.example", 443); d.Action != Deny {
		t.Fatalf("before: %v", d)
	}
	if v, _ := e.View(); v != v1 {
		t.Error("View rebuilt with nothing changed")
	}
	if _, err := other.Add(rule(t, "allow new.example")); err != nil {
		t.Fatal(err)
	}
	v2, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	if d := v2.Connect("", "new.example", 443); d.Action != Allow {
		t.Errorf("after another store added a rule: %v", d)
	}
	if d := v1.Connect("", "new.example", 443); d.Action != Deny {
		t.Error("an older view changed")
	}
}
