package policy

import (
	"strings"
	"testing"

	"github.com/cordon-dev/cordon/internal/secret"
)

func TestDiagnose(t *testing.T) {
	providers := testProviders(t,
		"my-llm=https://llm.internal.example.com/v1",
		"plain=http://10.0.0.5:8000/v1",
		"team=https://team.example.com/api",
	)
	store, err := secret.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, s := range []struct {
		scope   secret.Scope
		service string
	}{
		{secret.Global(), "my-llm"},
		{secret.Global(), "plain"},
		{secret.ForSandbox("dev"), "openai"},
		{secret.ForSandbox("dev"), "team"},
	} {
		if err := store.Set(s.scope, s.service, "value-"+s.service, false); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := store.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	p := testPolicy(t, Balanced,
		"deny denied.example",                  // r1
		"bypass pinned.example.com",            // r2
		"allow open.example.com",               // r3
		"deny llm.internal.example.com DELETE", // r4
		"allow llm.internal.example.com:80",    // r5
		"bypass api.anthropic.com",             // r6
	)
	v := NewView(p, providers, nil)

	type want struct {
		allowed, intercepted, bypassed bool
		rule                           string
		provider                       string
		scope                          string
		no                             NoCredential
	}
	tests := []struct {
		name    string
		sandbox string
		method  string
		url     string
		want    want
	}{
		{"allowed and injected", "", "POST", "https://llm.internal.example.com/v1/chat/completions",
			want{true, true, false, "", "my-llm", "global", ""}},
		{"sandbox secret", "dev", "", "https://api.openai.com/v1/models",
			want{true, true, false, "preset", "openai", "sandbox:dev", ""}},
		{"no provider", "", "", "https://open.example.com/x",
			want{true, true, false, "r3", "", "", NoCredentialNoProvider}},
		{"path outside base URL", "", "", "https://llm.internal.example.com/v2/chat",
			want{true, true, false, "", "", "", NoCredentialPath}},
		{"dot segments", "", "", "https://llm.internal.example.com/v1/../admin",
			want{true, true, false, "", "", "", NoCredentialDotSegments}},
		{"no secret in scope", "", "", "https://api.openai.com/v1/models",
			want{true, true, false, "preset", "openai", "", NoCredentialOtherSandbox}},
		{"secret only in another sandbox", "ci", "", "https://team.example.com/api/x",
			want{true, true, false, "", "team", "", NoCredentialOtherSandbox}},
		{"no secret anywhere, bypass ignored", "", "", "https://api.anthropic.com/v1/messages",
			want{true, true, false, "r6", "anthropic", "", NoCredentialNoSecret}},
		{"plain http", "", "", "http://llm.internal.example.com/v1/chat",
			want{true, true, false, "r5", "", "", NoCredentialPlainHTTP}},
		{"plain http refused", "", "", "http://team.example.com/api/x",
			want{false, true, false, "", "", "", NoCredentialRefused}},
		{"plain http allowed host", "", "", "http://open.example.com/x",
			want{true, true, false, "r3", "", "", NoCredentialNoProvider}},
		{"http provider", "", "", "http://10.0.0.5:8000/v1/models",
			want{true, true, false, "", "plain", "global", ""}},
		{"http provider other port", "", "", "http://10.0.0.5:8001/v1/models",
			want{false, true, false, "", "", "", NoCredentialRefused}},
		{"bypassed", "", "", "https://pinned.example.com/",
			want{true, false, true, "r2", "", "", NoCredentialBypassed}},
		{"denied", "", "", "https://denied.example/",
			want{false, false, false, "r1", "", "", NoCredentialRefused}},
		{"default refusal", "", "", "https://unknown.example/",
			want{false, false, false, "", "", "", NoCredentialRefused}},
		{"method denied", "", "delete", "https://llm.internal.example.com/v1/files/1",
			want{false, true, false, "r4", "", "", NoCredentialRefused}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := v.Diagnose(tt.sandbox, tt.method, tt.url, snap)
			if err != nil {
				t.Fatal(err)
			}
			got := want{d.Allowed, d.Intercepted, d.Bypassed, ruleID(d.Decision), "", d.SecretScope, d.NoCredential}
			if d.Provider != nil {
				got.provider = d.Provider.Name
			}
			if got != tt.want {
				t.Errorf("Diagnose(%s) = %+v (%s; %s), want %+v", tt.url, got, d.Decision.Reason(),
					d.NoCredentialReason(), tt.want)
			}
			if d.NoCredential != "" && d.NoCredentialReason() == "" {
				t.Error("no explanation for", d.NoCredential)
			}
			if d.Injected() != (d.SecretScope != "") {
				t.Error("Injected disagrees with SecretScope")
			}
		})
	}

	d, err := v.Diagnose("", "", "https://api.openai.com:8443/v1", snap)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed {
		t.Errorf("built-in provider on another port allowed: %s", d.Decision.Reason())
	}

	// Why no credential, in words.
	d, _ = v.Diagnose("ci", "", "https://team.example.com/api/x", snap)
	if got := d.NoCredentialReason(); !strings.Contains(got, "stored only for sandbox:dev") {
		t.Errorf("reason = %q", got)
	}
	d, _ = v.Diagnose("", "", "https://llm.internal.example.com/v2", snap)
	if got := d.NoCredentialReason(); !strings.Contains(got, "https://llm.internal.example.com/v1") {
		t.Errorf("reason = %q", got)
	}
}

func TestDiagnoseAddress(t *testing.T) {
	v := NewView(testPolicy(t, AllowAll), testProviders(t), nil)
	d, err := v.Diagnose("", "", "http://169.254.169.254/latest/meta-data/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed || d.AddressError == nil || d.AddressError.Range != "cloud metadata" {
		t.Errorf("metadata endpoint: %+v", d)
	}
}

func TestDiagnoseBadInput(t *testing.T) {
	v := NewView(nil, nil, nil)
	for _, tt := range []struct{ method, url, wantErr string }{
		{"", "api.openai.com/v1", "no scheme"},
		{"", "ftp://example.com/", "http and https only"},
		{"", "https:///path", "no host"},
		{"", "https://exa mple.com/", "spaces"},
		{"", "https://example.com:99999/", "invalid port"},
		{"", "https://example.com:/", "empty port"},
		{"", "https://bad..host/", "invalid host name"},
		{"GE T", "https://example.com/", "not an HTTP method"},
	} {
		if _, err := v.Diagnose("", tt.method, tt.url, nil); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Diagnose(%q, %q): %v, want an error with %q", tt.method, tt.url, err, tt.wantErr)
		}
	}
}
