package provider

import "testing"

// Servers that strip path parameters from each segment (";jsessionid=..."
// on Java servers) read "..;x" as "..": such a path leaves the base path
// as surely as "..", and must get no credential.
func TestPathParameterDotSegments(t *testing.T) {
	set := testSet(t, Spec{Name: "llm", BaseURL: "https://llm.example.com/v1"})
	for _, path := range []string{
		"/v1/..;/admin",
		"/v1/..;x=1/admin",
		"/v1/%2e%2e;/admin",
		"/v1/.;/x",
		"/v1/a/..;",
		"/v1/..%3B/admin",
	} {
		if m := set.Match("https", "llm.example.com", 443, path); m.Provider != nil || m.Reason != ReasonDotSegments {
			t.Errorf("%s: matched %v (reason %q)", path, m.Provider != nil, m.Reason)
		}
	}
	for _, path := range []string{"/v1/a;b", "/v1/..a;b", "/v1/;/x"} {
		if m := set.Match("https", "llm.example.com", 443, path); m.Provider == nil {
			t.Errorf("%s: no match (%s)", path, m.Reason)
		}
	}
}
