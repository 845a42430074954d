package names

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"my-llm", true},
		{"a", true},
		{"llm.internal.example.com", true},
		{"v1_2", true},
		{"0day", true},
		{strings.Repeat("a", MaxLen), true},
		{strings.Repeat("a", MaxLen+1), false},
		{"", false},
		{"-x", false},
		{".hidden", false},
		{"_x", false},
		{"My-LLM", false},
		{"a b", false},
		{"a/b", false},
		{"..", false},
		{"a\nb", false},
		{"é", false},
	}
	for _, tt := range tests {
		err := Check("provider", tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "provider name") {
			t.Errorf("Check(%q) error %q does not name the kind", tt.in, err)
		}
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("my-llm")
	f.Add("a/../b")
	f.Fuzz(func(t *testing.T, s string) {
		if Check("sandbox", s) != nil {
			return
		}
		// An accepted name is safe as a single path element.
		if strings.ContainsAny(s, "/\\\x00") || s == "." || s == ".." || strings.HasPrefix(s, "-") {
			t.Fatalf("Check accepted %q", s)
		}
	})
}
