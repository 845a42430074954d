package policy

import (
	"fmt"
	"net/netip"
	"testing"
)

// benchView is a realistic view: the balanced preset, a few registered
// providers and a hundred user rules of every kind.
func benchView(b *testing.B) *View {
	b.Helper()
	var descs []string
	for i := range 25 {
		descs = append(descs,
			fmt.Sprintf("allow svc%d.example.com", i),
			fmt.Sprintf("deny **.bad%d.example", i),
			fmt.Sprintf("allow *.team%d.example.org @sb%d", i, i%3),
			fmt.Sprintf("allow 10.%d.0.0/16", i),
		)
	}
	providers := testProviders(b, "my-llm=https://llm.internal.example.com/v1", "local=http://10.0.0.5:8000/v1")
	return NewView(testPolicy(b, Balanced, descs...), providers, nil)
}

// The proxy decides every new connection; these must not allocate.
func BenchmarkConnectDecision(b *testing.B) {
	v := benchView(b)
	for _, bc := range []struct{ name, host string }{
		{"preset", "api.anthropic.com"},
		{"preset-wildcard", "raw.githubusercontent.com"},
		{"provider", "llm.internal.example.com"},
		{"user-rule", "svc7.example.com"},
		{"refused", "a.b.c.d.unknown.example"},
		{"address", "10.20.1.1"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d := v.Connect("sb1", bc.host, 443)
				if d.Action == "" {
					b.Fatal("no decision")
				}
			}
		})
	}
}

func BenchmarkCheckAddress(b *testing.B) {
	v := benchView(b)
	for _, bc := range []struct{ name, host, addr string }{
		{"public-v4", "api.anthropic.com", "160.79.104.10"},
		{"public-v6", "api.anthropic.com", "2607:6bc0::10"},
		{"unlocked-provider", "llm.internal.example.com", "10.9.9.9"},
	} {
		addr := netip.MustParseAddr(bc.addr)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := v.CheckAddress("sb1", bc.host, 443, addr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRequestDecision(b *testing.B) {
	v := benchView(b)
	for _, bc := range []struct{ name, host string }{
		{"no-path-rules", "api.anthropic.com"},
		{"path-rules", "storage.googleapis.com"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d := v.Request("", bc.host, 443, "GET", "/proxy-golang-org-prod/v1/messages")
				if d.Action != Allow {
					b.Fatal(d)
				}
			}
		})
	}
}

// BenchmarkEngineView is the cost of taking a fresh view for a connection
// when nothing changed: a stat of policy.json.
func BenchmarkEngineView(b *testing.B) {
	store := OpenStore(b.TempDir())
	if _, err := store.Add(rule(b, "allow example.com")); err != nil {
		b.Fatal(err)
	}
	e := NewEngine(store, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.View(); err != nil {
			b.Fatal(err)
		}
	}
}
