package hostname

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "api.openai.com", want: "api.openai.com"},
		{in: "API.OpenAI.com.", want: "api.openai.com"},
		{in: "bücher.example", want: "xn--bcher-kva.example"},
		{in: "BÜCHER.example.", want: "xn--bcher-kva.example"},
		{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{in: "_service.example.com", want: "_service.example.com"},
		{in: "localhost", want: "localhost"},
		{in: "127.0.0.1", want: "127.0.0.1"},
		{in: "::1", want: "::1"},
		{in: "[::1]", want: "::1"},
		{in: "[2001:DB8::1]", want: "2001:db8::1"},
		{in: "::ffff:127.0.0.1", want: "127.0.0.1"},
		{in: "[::ffff:169.254.169.254]", want: "169.254.169.254"},
		{in: "", wantErr: true},
		{in: ".", wantErr: true},
		{in: "example.com..", wantErr: true},
		{in: "a..b", wantErr: true},
		{in: "-a.example", wantErr: true},
		{in: "a b.example", wantErr: true},
		{in: "a\nb.example", wantErr: true},
		{in: "fe80::1%eth0", wantErr: true},
		{in: "[127.0.0.1]", wantErr: true},
		{in: "host:443", wantErr: true},
		{in: "2130706433", wantErr: true},
		{in: "0x7f.1", wantErr: true},
		{in: "127.1", wantErr: true},
		{in: "example.0x", wantErr: true},
		{in: "1.2.3.example", want: "1.2.3.example"},
		{in: "0xfoo.example", want: "0xfoo.example"},
		{in: strings.Repeat("a", 64) + ".example", wantErr: true},
		{in: strings.Repeat("abcdefgh.", 32) + "com", wantErr: true},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("Normalize(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"api.openai.com", "API.example.", "bücher.example", "[::1]", "127.0.0.1", "0x7f.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := Normalize(in)
		if err != nil {
			return
		}
		// The canonical form is a fixed point and holds no character that
		// could change its meaning in a URL, header or log line.
		again, err := Normalize(got)
		if err != nil || again != got {
			t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q, %v", in, got, got, again, err)
		}
		if strings.ContainsAny(got, "/?#@ \t\r\n%[]") || strings.ToLower(got) != got {
			t.Fatalf("Normalize(%q) = %q holds a forbidden character", in, got)
		}
	})
}
