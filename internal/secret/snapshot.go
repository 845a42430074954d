package secret

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// Snapshot is the contents of a Store at one moment. It never changes after
// it is made, so it can be shared between goroutines and kept for the
// length of a request. A nil *Snapshot is empty.
type Snapshot struct {
	entries []Entry          // sorted as Entries returns them
	index   map[entryKey]int // position in entries
	values  []Value          // distinct values, longest first
}

// entryKey identifies an entry; sandbox is "" for the global scope.
type entryKey struct {
	sandbox, service string
}

// Value is one distinct stored value and every service it is stored for,
// in any scope. Like Entry, it prints its value masked.
type Value struct {
	Value    string
	Services []string // sorted, each once
}

// Format implements fmt.Formatter so that every verb prints the value
// masked.
func (v Value) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprintf(f, "secret.Value{Value:%q, Services:%#v}", Mask(v.Value), v.Services)
		return
	}
	fmt.Fprintf(f, "{%s %v}", Mask(v.Value), v.Services)
}

// String returns the value masked, with its services.
func (v Value) String() string { return fmt.Sprint(v) }

// LogValue implements slog.LogValuer with the value masked.
func (v Value) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("value", Mask(v.Value)),
		slog.Any("services", v.Services),
	)
}

// StoredFor reports whether the value is stored for service.
func (v Value) StoredFor(service string) bool {
	_, found := slices.BinarySearch(v.Services, service)
	return found
}

// newSnapshot builds a snapshot from entries, which it takes ownership of
// and sorts. The caller has checked that no scope holds a service twice.
func newSnapshot(entries []Entry) *Snapshot {
	slices.SortFunc(entries, compareEntries)
	s := &Snapshot{
		entries: entries,
		index:   make(map[entryKey]int, len(entries)),
	}
	services := make(map[string][]string)
	for i, e := range entries {
		s.index[entryKey{e.Scope.Sandbox, e.Service}] = i
		services[e.Value] = append(services[e.Value], e.Service)
	}
	for value, list := range services {
		slices.Sort(list)
		s.values = append(s.values, Value{Value: value, Services: slices.Compact(list)})
	}
	slices.SortFunc(s.values, func(a, b Value) int {
		return cmp.Or(cmp.Compare(len(b.Value), len(a.Value)), strings.Compare(a.Value, b.Value))
	})
	return s
}

// compareEntries orders entries by scope, the global scope first and then
// sandboxes by name, and then by service.
func compareEntries(a, b Entry) int {
	return cmp.Or(
		cmp.Compare(a.Scope.Sandbox, b.Scope.Sandbox),
		cmp.Compare(a.Service, b.Service),
	)
}

// Len returns the number of entries.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	return len(s.entries)
}

// Lookup returns the secret for service as seen by the sandbox called
// sandbox: that sandbox's own entry when it has one, and otherwise the
// global entry. With sandbox "" only the global scope is consulted.
//
// Lookup does not allocate; it is on the path of every proxied request.
func (s *Snapshot) Lookup(sandbox, service string) (Entry, bool) {
	if s == nil {
		return Entry{}, false
	}
	if sandbox != "" {
		if i, ok := s.index[entryKey{sandbox, service}]; ok {
			return s.entries[i], true
		}
	}
	if i, ok := s.index[entryKey{"", service}]; ok {
		return s.entries[i], true
	}
	return Entry{}, false
}

// Entries returns a copy of every entry, sorted by scope (global first,
// then sandboxes by name) and then by service.
func (s *Snapshot) Entries() []Entry {
	if s == nil {
		return nil
	}
	return slices.Clone(s.entries)
}

// Values returns a copy of every distinct stored value with the services
// it is stored for, longest value first. It is meant for a leak guard that
// needs more than FindForeign.
func (s *Snapshot) Values() []Value {
	if s == nil {
		return nil
	}
	out := make([]Value, len(s.values))
	for i, v := range s.values {
		out[i] = Value{Value: v.Value, Services: slices.Clone(v.Services)}
	}
	return out
}

// FindForeign reports whether text contains a stored value that is not
// stored for service, such as another provider's key in a header bound for
// this provider. It returns the longest such value. The returned Value
// shares memory with the snapshot: its Services must not be modified.
//
// FindForeign does not allocate. Its cost grows with the number of distinct
// values times the length of text, which suits a few dozen values checked
// against header fields.
//
// A value that occurs in text only as part of one of service's own values
// is still reported; that errs on the side of refusing the request.
func (s *Snapshot) FindForeign(text, service string) (Value, bool) {
	if s == nil {
		return Value{}, false
	}
	for _, v := range s.values {
		if len(v.Value) > len(text) || !strings.Contains(text, v.Value) {
			continue
		}
		if !v.StoredFor(service) {
			return v, true
		}
	}
	return Value{}, false
}
