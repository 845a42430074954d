package audit

import (
	"strings"
	"testing"
)

func TestRedactTarget(t *testing.T) {
	long := strings.Repeat("a", maxNameLen+1)
	tests := []struct {
		path, query string
		want        string
	}{
		{"/v1/models", "", "/v1/models"},
		{"/v1/models", "key=sk-live-123&alt=json", "/v1/models?key=&alt="},
		{"/", "a=1&a=2", "/?a=&a="},
		{"/x", "stream", "/x?*"},
		{"/x", "sk-live-123&a=1", "/x?*&a="},
		{"/x", "a=1&&b=2&", "/x?a=&b="},
		{"/x", "=orphan", "/x?*="},
		{"/x", "q=a%3Db&r=x=y", "/x?q=&r="},
		{"/x", "ids%5B%5D=1&ids[]=2", "/x?ids%5B%5D=&ids[]="},
		{"/x", long + "=v", "/x?*="},
		{"/x", "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789=", "/x?*="},
		{"/x", "a b=1&c+d=2&e;f=3", "/x?*=&*=&*="},
		{"/x", "k=v;w=z", "/x?k="},
		{"", "q=1", "?q="},
		{"/p%2Fq", "x=%00", "/p%2Fq?x="},
	}
	for _, tt := range tests {
		if got := RedactTarget(tt.path, tt.query); got != tt.want {
			t.Errorf("RedactTarget(%q, %q) = %q, want %q", tt.path, tt.query, got, tt.want)
		}
	}
}

// FuzzRedactTarget checks that what follows the path is made only of
// parameter names each followed by '=', '&' and '*': there is no room for a
// value.
func FuzzRedactTarget(f *testing.F) {
	f.Add("/v1/x", "key=secret&alt=json")
	f.Add("/", "a&b=&=c&&")
	f.Add("/x", "%zz=%00&ids[]=1")
	f.Fuzz(func(t *testing.T, path, query string) {
		got := RedactTarget(path, query)
		rest, ok := strings.CutPrefix(got, path)
		if !ok {
			t.Fatalf("RedactTarget(%q, %q) = %q lost the path", path, query, got)
		}
		if rest == "" {
			return
		}
		rest, ok = strings.CutPrefix(rest, "?")
		if !ok {
			t.Fatalf("RedactTarget(%q, %q) = %q: no '?' after the path", path, query, got)
		}
		for piece := range strings.SplitSeq(rest, "&") {
			if piece == "*" {
				continue
			}
			name, ok := strings.CutSuffix(piece, "=")
			if !ok || name != "*" && !plausibleName(name) {
				t.Fatalf("RedactTarget(%q, %q) = %q: piece %q is not a name", path, query, got, piece)
			}
		}
	})
}

func TestClip(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int // length of the result
	}{
		{"short", "abc", 3},
		{"exact", strings.Repeat("a", maxText), maxText},
		{"long", strings.Repeat("a", maxText+10), maxText},
		{"cut inside a character", strings.Repeat("a", maxText-1) + "é", maxText - 1},
		{"character ends at the limit", strings.Repeat("a", maxText-2) + "éé", maxText},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := clip(tt.in)
			if len(got) != tt.want || !strings.HasPrefix(tt.in, got) {
				t.Errorf("clip gave %d bytes, want %d", len(got), tt.want)
			}
		})
	}
}
