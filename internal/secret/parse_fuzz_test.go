package secret

import (
	"strings"
	"testing"
)

// FuzzParseScope: a scope parses only from the form String writes.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"global", "sandbox:box", "sandbox:", "sandbox:a/b", "Global"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		scope, err := ParseScope(s)
		if err != nil {
			return
		}
		if scope.String() != s {
			t.Fatalf("%q parses to %q", s, scope.String())
		}
	})
}

// FuzzParseKey: a key file gives one identity or an error that quotes
// nothing of the file, which is key material.
func FuzzParseKey(f *testing.F) {
	f.Add([]byte("# created by cordon\nAGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX\n"))
	f.Add([]byte("AGE-SECRET-KEY-1X\nAGE-SECRET-KEY-1Y\n"))
	f.Add([]byte("\n\n#\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := parseKey(data)
		if err == nil {
			if id == nil {
				t.Fatal("no identity and no error")
			}
			return
		}
		for _, line := range strings.Split(string(data), "\n") {
			if line = strings.TrimSpace(line); len(line) >= 8 && strings.Contains(err.Error(), line) {
				t.Fatalf("the error %q quotes the file", err)
			}
		}
	})
}
