package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cordon-dev/cordon/internal/provider"
)

// rule builds a rule from a compact description used throughout the
// tests: "ACTION HOST [METHOD] [/PATH] [@SANDBOX]".
func rule(t testing.TB, desc string) Rule {
	t.Helper()
	fields := strings.Fields(desc)
	if len(fields) < 2 {
		t.Fatalf("rule %q: want ACTION HOST ...", desc)
	}
	r := Rule{Action: Action(fields[0]), Host: fields[1]}
	for _, f := range fields[2:] {
		switch {
		case strings.HasPrefix(f, "@"):
			r.Sandbox = f[1:]
		case strings.HasPrefix(f, "/"):
			r.Path = f
		default:
			r.Method = f
		}
	}
	return r
}

// testPolicy makes a policy of preset and rules given as rule
// descriptions; the rules get IDs r1, r2, ...
func testPolicy(t testing.TB, preset Preset, descs ...string) *Policy {
	t.Helper()
	var rules []Rule
	for i, d := range descs {
		r := rule(t, d)
		r.ID = fmt.Sprintf("r%d", i+1)
		rules = append(rules, r)
	}
	p, err := NewPolicy(preset, rules)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testProviders returns the built-ins plus providers registered from
// name=baseURL pairs.
func testProviders(t testing.TB, pairs ...string) *provider.Set {
	t.Helper()
	reg := provider.OpenRegistry(t.TempDir())
	for _, pair := range pairs {
		name, base, _ := strings.Cut(pair, "=")
		if _, err := reg.Add(provider.Spec{Name: name, BaseURL: base}, false); err != nil {
			t.Fatal(err)
		}
	}
	set, err := reg.Set()
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// ruleID returns the decision's rule ID, "preset" for a preset entry, or
// "" without a rule.
func ruleID(d Decision) string {
	switch {
	case d.Rule == nil:
		return ""
	case d.Source == SourcePreset:
		return "preset"
	}
	return d.Rule.ID
}
