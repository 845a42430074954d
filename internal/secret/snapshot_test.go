package secret

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func testSnapshot() *Snapshot {
	return newSnapshot([]Entry{
		{Scope: ForSandbox("dev"), Service: "openai", Value: "dev-openai-key"},
		{Scope: Global(), Service: "openai", Value: "global-openai-key"},
		{Scope: Global(), Service: "anthropic", Value: "global-anthropic-key"},
		{Scope: ForSandbox("dev"), Service: "only-dev", Value: "only-dev-key"},
		{Scope: ForSandbox("ci"), Service: "openai", Value: "ci-openai-key"},
		{Scope: ForSandbox("ci"), Service: "my-llm", Value: "global-openai-key"},
	})
}

func TestLookup(t *testing.T) {
	snap := testSnapshot()
	tests := []struct {
		sandbox, service string
		want             string // "" for no secret
	}{
		{"", "openai", "global-openai-key"},
		{"dev", "openai", "dev-openai-key"},
		{"ci", "openai", "ci-openai-key"},
		{"other", "openai", "global-openai-key"},
		{"dev", "anthropic", "global-anthropic-key"},
		{"dev", "only-dev", "only-dev-key"},
		{"", "only-dev", ""},
		{"other", "only-dev", ""},
		{"dev", "missing", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		e, ok := snap.Lookup(tt.sandbox, tt.service)
		if ok != (tt.want != "") || e.Value != tt.want {
			t.Errorf("Lookup(%q, %q) = %q, %v; want %q", tt.sandbox, tt.service, e.Value, ok, tt.want)
		}
		if ok && e.Service != tt.service {
			t.Errorf("Lookup(%q, %q) returned service %q", tt.sandbox, tt.service, e.Service)
		}
	}
}

func TestEntriesOrder(t *testing.T) {
	var got []string
	for _, e := range testSnapshot().Entries() {
		got = append(got, e.Scope.String()+" "+e.Service)
	}
	want := []string{
		"global anthropic",
		"global openai",
		"sandbox:ci my-llm",
		"sandbox:ci openai",
		"sandbox:dev only-dev",
		"sandbox:dev openai",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Entries() order (-want +got):\n%s", diff)
	}
}

func TestSnapshotIsImmutable(t *testing.T) {
	snap := testSnapshot()
	snap.Entries()[0].Value = "changed"
	snap.Values()[0].Services[0] = "changed"
	if e, _ := snap.Lookup("", "anthropic"); e.Value != "global-anthropic-key" {
		t.Errorf("changing Entries() changed the snapshot: %q", e.Value)
	}
	if diff := cmp.Diff(testSnapshot().Values(), snap.Values()); diff != "" {
		t.Errorf("changing Values() changed the snapshot (-want +got):\n%s", diff)
	}
}

func TestValues(t *testing.T) {
	want := []Value{
		{Value: "global-anthropic-key", Services: []string{"anthropic"}},
		{Value: "global-openai-key", Services: []string{"my-llm", "openai"}},
		{Value: "dev-openai-key", Services: []string{"openai"}},
		{Value: "ci-openai-key", Services: []string{"openai"}},
		{Value: "only-dev-key", Services: []string{"only-dev"}},
	}
	if diff := cmp.Diff(want, testSnapshot().Values()); diff != "" {
		t.Errorf("Values() (-want +got):\n%s", diff)
	}
}

func TestFindForeign(t *testing.T) {
	snap := testSnapshot()
	tests := []struct {
		text, service string
		want          string // the value found, "" for none
	}{
		{"Bearer global-openai-key", "openai", ""},
		{"Bearer global-openai-key", "my-llm", ""},
		{"Bearer dev-openai-key", "openai", ""},
		{"Bearer global-openai-key", "anthropic", "global-openai-key"},
		{"x-api-key: global-anthropic-key", "openai", "global-anthropic-key"},
		{"only-dev-key and global-anthropic-key", "only-dev", "global-anthropic-key"},
		{"nothing here", "openai", ""},
		{"", "openai", ""},
		{"only-dev-ke", "openai", ""},
	}
	for _, tt := range tests {
		v, ok := snap.FindForeign(tt.text, tt.service)
		if ok != (tt.want != "") || v.Value != tt.want {
			t.Errorf("FindForeign(%q, %q) = %q, %v; want %q", tt.text, tt.service, v.Value, ok, tt.want)
		}
	}
}

func TestNilSnapshot(t *testing.T) {
	var snap *Snapshot
	if _, ok := snap.Lookup("dev", "openai"); ok {
		t.Error("Lookup on nil found something")
	}
	if _, ok := snap.FindForeign("x", "openai"); ok {
		t.Error("FindForeign on nil found something")
	}
	if snap.Len() != 0 || snap.Entries() != nil || snap.Values() != nil {
		t.Error("nil snapshot is not empty")
	}
}

func TestSnapshotHotPathDoesNotAllocate(t *testing.T) {
	snap := testSnapshot()
	allocs := testing.AllocsPerRun(100, func() {
		snap.Lookup("dev", "openai")
		snap.Lookup("other", "anthropic")
		snap.FindForeign("Bearer global-openai-key", "openai")
	})
	if allocs != 0 {
		t.Errorf("Lookup and FindForeign allocate %v times", allocs)
	}
}
