package cli

import (
	"strings"
	"testing"
)

// The command line's own value parsers: whatever they are given, they
// return a value or a usage error, never panic, and accept nothing that
// would misbehave later.

func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"5m", "7d", "1d12h", "", "-1h", "9999999999d", "1.5h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseSince(s)
		if err == nil && d <= 0 {
			t.Fatalf("parseSince(%q) = %v, a duration that is not positive", s, d)
		}
	})
}

func FuzzParseEnvFlags(f *testing.F) {
	for _, s := range []string{"KEY=value", "=x", "K", "K=", "K=a=b", "K\x00=v"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := parseEnvFlags([]string{s})
		if err != nil {
			return
		}
		k, _, ok := strings.Cut(out[0], "=")
		if !ok || k == "" || strings.Contains(out[0], "\x00") {
			t.Fatalf("parseEnvFlags accepted %q", s)
		}
	})
}

func FuzzParseLogLevel(f *testing.F) {
	for _, s := range []string{"debug", "info", "WARN", "error+2", "", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parseLogLevel(s)
	})
}

func FuzzParseWorkspaces(f *testing.F) {
	for _, s := range []string{".", ":ro", "/", "a:rw", "/nonexistent:ro"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mounts, err := parseWorkspaces([]string{s})
		if err != nil {
			return
		}
		for _, m := range mounts {
			if m.Source == "/" || !strings.HasPrefix(m.Source, "/") || m.Source != m.Target {
				t.Fatalf("parseWorkspaces(%q) = %+v", s, m)
			}
		}
	})
}
