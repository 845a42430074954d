package provider

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Masking every wire form in what Apply produced must leave nothing a
// client could decode the secret from.
func TestWireFormsCoverApply(t *testing.T) {
	for _, tt := range []struct {
		name   string
		auth   Auth
		secret string
	}{
		{"bearer", Bearer, "sk-0123456789"},
		{"raw header", Auth{Kind: AuthHeader, Header: "X-Api-Key"}, "sk-0123456789"},
		{"basic", Auth{Kind: AuthBasic, Header: "Authorization"}, "alice:sk-0123456789"},
		{"query", Auth{Kind: AuthQuery, Param: "key"}, "sk-0123456789"},
		{"query needing escapes", Auth{Kind: AuthQuery, Param: "key"}, "sk/01+23=45 &6789"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			query := tt.auth.Apply(h, "a=1", tt.secret)
			seen := []string{query}
			for _, values := range h {
				seen = append(seen, values...)
			}
			for _, s := range seen {
				for _, form := range tt.auth.WireForms(tt.secret) {
					s = strings.ReplaceAll(s, form, strings.Repeat("*", len(form)))
				}
				if leaked(s, tt.secret) {
					t.Errorf("after masking %q, %q still reveals the secret", tt.auth.WireForms(tt.secret), s)
				}
			}
		})
	}
}

// leaked reports whether s holds secret in clear, escaped, or as base64.
func leaked(s, secret string) bool {
	if strings.Contains(s, secret) {
		return true
	}
	if u, err := url.QueryUnescape(s); err == nil && strings.Contains(u, secret) {
		return true
	}
	for _, word := range strings.Fields(s) {
		if b, err := base64.StdEncoding.DecodeString(word); err == nil && strings.Contains(string(b), secret) {
			return true
		}
	}
	return false
}
