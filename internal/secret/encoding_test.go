package secret

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEncodingRoundTrip(t *testing.T) {
	updated := time.Date(2025, 6, 7, 8, 9, 10, 11, time.UTC)
	entries := []Entry{
		{Scope: ForSandbox("dev"), Service: "openai", Value: "sk-dev", Updated: updated},
		{Scope: Global(), Service: "openai", Value: "sk-global \"quoted\" \\ é", Updated: updated},
		{Scope: Global(), Service: "anthropic", Value: "sk-ant", Updated: updated},
	}
	data, err := encodeEntries(entries)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeEntries(data)
	if err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
	want := newSnapshot(entries).Entries()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}

	// The same contents always encode to the same bytes.
	again, err := encodeEntries([]Entry{entries[2], entries[0], entries[1]})
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(data) {
		t.Errorf("encoding depends on order:\n%s\n%s", data, again)
	}
}

func TestDecodeEntries(t *testing.T) {
	const value = "SECRETVALUE123"
	tests := []struct {
		name  string
		in    string
		want  int    // entries, when wantErr is ""
		error string // part of the error message
	}{
		{"empty store", `{"version":1,"secrets":[]}`, 0, ""},
		{"null secrets", `{"version":1,"secrets":null}`, 0, ""},
		{"no secrets field", `{"version":1}`, 0, ""},
		{"one", `{"version":1,"secrets":[{"scope":"global","service":"openai","value":"` + value +
			`","updated":"2025-01-02T03:04:05Z"}]}`, 1, ""},
		{"no time", `{"version":1,"secrets":[{"scope":"sandbox:dev","service":"openai","value":"` + value +
			`"}]}`, 1, ""},

		{"empty input", ``, 0, "truncated JSON"},
		{"cut short", `{"version":1,"secrets":[`, 0, "truncated JSON"},
		{"not JSON", `SECRETVALUE123`, 0, "malformed JSON"},
		{"truncated", `{"version":1,"secrets":[{"value":"` + value, 0, "truncated JSON"},
		{"no version", `{"secrets":[]}`, 0, `no "version" field`},
		{"version 2", `{"version":2,"secrets":[]}`, 0, "version 2 is not supported"},
		{"version as string", `{"version":"1"}`, 0, `"version" holds the wrong type`},
		{"array", `[]`, 0, "array where an object was expected"},
		{"unknown top-level field", `{"version":1,"secrets":[],"` + value + `":1}`, 0, "unknown field"},
		{"unknown secret field", `{"version":1,"secrets":[{"scope":"global","service":"openai","value":"x","` +
			value + `":"y"}]}`, 0, "unknown field"},
		{"trailing data", `{"version":1,"secrets":[]} {}`, 0, "malformed JSON at byte 28"},
		{"bad scope", `{"version":1,"secrets":[{"scope":"sandbox:Dev","service":"openai","value":"` + value +
			`"}]}`, 0, "secret 1: scope"},
		{"bad service", `{"version":1,"secrets":[{"scope":"global","service":"Open AI","value":"` + value +
			`"}]}`, 0, "secret 1: provider name"},
		{"empty value", `{"version":1,"secrets":[{"scope":"global","service":"openai","value":""}]}`,
			0, "secret 1: secret value is empty"},
		{"value with newline", `{"version":1,"secrets":[{"scope":"global","service":"openai","value":"` +
			value + `\n"}]}`, 0, "line break"},
		{"raw control character in value", "{\"version\":1,\"secrets\":[{\"value\":\"" + value + "\x01\"}]}",
			0, "malformed JSON"},
		{"value as number", `{"version":1,"secrets":[{"scope":"global","service":"openai","value":123456789}]}`,
			0, `"secrets.value" holds the wrong type`},
		{"bad time", `{"version":1,"secrets":[{"scope":"global","service":"openai","value":"x","updated":"` +
			value + `"}]}`, 0, "invalid JSON value"},
		{"duplicate", `{"version":1,"secrets":[` +
			`{"scope":"global","service":"openai","value":"a"},` +
			`{"scope":"sandbox:dev","service":"openai","value":"b"},` +
			`{"scope":"global","service":"openai","value":"c"}]}`, 0, "secret 3: a second secret for openai"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeEntries([]byte(tt.in))
			if tt.error == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(got) != tt.want {
					t.Errorf("got %d entries, want %d", len(got), tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.error)
			}
			if !strings.Contains(err.Error(), tt.error) {
				t.Errorf("error %q does not contain %q", err, tt.error)
			}
			if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "123456789") {
				t.Errorf("error %q quotes the input", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	valid, err := encodeEntries([]Entry{
		{Scope: Global(), Service: "openai", Value: "sk-abc", Updated: time.Unix(1e9, 0).UTC()},
		{Scope: ForSandbox("dev"), Service: "my-llm", Value: "tok en"},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte(`{"version":1,"secrets":[]}`))
	f.Add([]byte(`{"version":1,"secrets":[{"scope":"global","service":"a","value":"b"},{"scope":"global"}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := decodeEntries(data)
		if err != nil {
			return
		}

		// What decodes is valid, and survives a round trip unchanged.
		for _, e := range entries {
			if checkTarget(e.Scope, e.Service) != nil || ValidateValue(e.Value) != nil {
				t.Fatalf("decoded an invalid entry %+v", e)
			}
		}
		encoded, err := encodeEntries(entries)
		if err != nil {
			t.Fatalf("encoding decoded entries: %v", err)
		}
		again, err := decodeEntries(encoded)
		if err != nil {
			t.Fatalf("decoding re-encoded entries: %v\n%s", err, encoded)
		}
		if diff := cmp.Diff(newSnapshot(entries).Entries(), again); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}
