package provider

import (
	"net/http"
	"net/url"
	"testing"
)

// FuzzParseQueryParam: an accepted parameter name carries a secret through
// Apply and back out of the query unchanged.
func FuzzParseQueryParam(f *testing.F) {
	for _, s := range []string{"key", "api-key", "a b", "", "k&x=1", "%6b"} {
		f.Add(s, "s3cret&x=1 +/")
	}
	f.Fuzz(func(t *testing.T, name, secret string) {
		auth, err := ParseQueryParam(name)
		if err != nil {
			return
		}
		q := auth.Apply(http.Header{}, "a=1&"+url.QueryEscape(name)+"=client", secret)
		v, err := url.ParseQuery(q)
		if err != nil {
			t.Fatalf("Apply made an unparsable query %q: %v", q, err)
		}
		if got := v[name]; len(got) != 1 || got[0] != secret {
			t.Fatalf("query %q carries %q for %q", q, got, name)
		}
	})
}
