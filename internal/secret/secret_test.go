package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestScopeString(t *testing.T) {
	tests := []struct {
		scope Scope
		want  string
	}{
		{Global(), "global"},
		{Scope{}, "global"},
		{ForSandbox("dev"), "sandbox:dev"},
		{ForSandbox("a.b-c_1"), "sandbox:a.b-c_1"},
	}
	for _, tt := range tests {
		if got := tt.scope.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.scope, got, tt.want)
		}
		parsed, err := ParseScope(tt.want)
		if err != nil {
			t.Errorf("ParseScope(%q): %v", tt.want, err)
			continue
		}
		if parsed != tt.scope {
			t.Errorf("ParseScope(%q) = %#v, want %#v", tt.want, parsed, tt.scope)
		}
	}
}

func TestParseScopeErrors(t *testing.T) {
	tests := []string{
		"",
		"Global",
		"sandbox",
		"sandbox:",
		"sandbox:Dev",
		"sandbox:-dev",
		"sandbox:a/b",
		"sandbox:" + strings.Repeat("a", 64),
		"dev",
		" global",
	}
	for _, tt := range tests {
		if scope, err := ParseScope(tt); err == nil {
			t.Errorf("ParseScope(%q) = %#v, want an error", tt, scope)
		}
	}
}

func TestScopeText(t *testing.T) {
	type doc struct {
		Scope Scope `json:"scope"`
	}
	for _, scope := range []Scope{Global(), ForSandbox("dev")} {
		data, err := json.Marshal(doc{scope})
		if err != nil {
			t.Fatal(err)
		}
		var back doc
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatalf("unmarshaling %s: %v", data, err)
		}
		if back.Scope != scope {
			t.Errorf("%s decoded as %#v, want %#v", data, back.Scope, scope)
		}
	}
	var d doc
	if err := json.Unmarshal([]byte(`{"scope":"sandbox:Bad"}`), &d); err == nil {
		t.Error("decoding an invalid scope succeeded")
	}
}

func TestMask(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", "********"},
		{"one", "x", "********"},
		{"fifteen", "abcdefghijklmno", "********"},
		{"sixteen", "abcdefghijklmnop", "ab...op"},
		{"seventeen", "abcdefghijklmnopq", "ab...pq"},
		{"twenty-four", "abcdefghijklmnopqrstuvwx", "abc...vwx"},
		{"forty", "sk-proj-" + strings.Repeat("x", 28) + "WXYZ", "sk-p...WXYZ"},
		{"long", strings.Repeat("a", 500) + "1234", "aaaa...1234"},
		{"fifteen runes in more bytes", strings.Repeat("é", 15), "********"},
		{"sixteen runes", "ñandú" + strings.Repeat("x", 9) + "çø", "ña...çø"},
		{"forty runes", "日本語の鍵" + strings.Repeat("k", 30) + "終わりです", "日本語の...わりです"},
		{"invalid UTF-8", "abcdefghijklmnop\xff", "********"},
		{"control character shown", "\x01bcdefghijklmnop", "********"},
		{"control character hidden", "abc\x01efghijklmnop", "ab...op"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Mask(tt.in)
			if got != tt.want {
				t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
			}

			// Never more than a quarter of the characters, never the whole.
			shown := utf8.RuneCountInString(strings.Replace(got, "...", "", 1))
			if got != "********" && shown*4 > utf8.RuneCountInString(tt.in) {
				t.Errorf("Mask(%q) shows %d characters", tt.in, shown)
			}
		})
	}
}

func TestValidateValue(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"typical key", "sk-proj-abc123_DEF-456", true},
		{"one character", "x", true},
		{"bearer with space inside", "Basic dXNlcjpwYXNz", true},
		{"unicode", "clé-secrète-日本", true},
		{"printable ASCII", "!\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`{|}~", true},
		{"at the limit", strings.Repeat("a", MaxValueLen), true},
		{"empty", "", false},
		{"over the limit", strings.Repeat("a", MaxValueLen+1), false},
		{"LF", "abc\ndef", false},
		{"trailing LF", "abcdef\n", false},
		{"CR", "abc\rdef", false},
		{"CRLF", "abc\r\n", false},
		{"NUL", "abc\x00def", false},
		{"tab", "abc\tdef", false},
		{"escape", "abc\x1bdef", false},
		{"unit separator", "abc\x1fdef", false},
		{"DEL", "abc\x7fdef", false},
		{"C1 control", "abc\u0085def", false},
		{"invalid UTF-8", "abc\xffdef", false},
		{"leading space", " abcdef", false},
		{"trailing space", "abcdef ", false},
		{"trailing no-break space", "abcdef\u00a0", false},
		{"only a space", " ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateValue(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateValue(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && len(tt.in) >= 3 && strings.Contains(err.Error(), strings.TrimSpace(tt.in)) {
				t.Errorf("error %q contains the value", err)
			}
		})
	}
}

// validateMessages are the shapes of every ValidateValue error, with code
// points replaced by U+X and numbers by N.
var validateMessages = regexp.MustCompile(`^secret value (` +
	`is empty|` +
	`is N bytes long; the limit is N|` +
	`is not valid UTF-N text|` +
	`contains a line break at byte N|` +
	`contains a tab at byte N|` +
	`contains control character U\+X at byte N|` +
	`starts or ends with white space)$`)

var (
	codePoint = regexp.MustCompile(`U\+[0-9A-F]{4,6}`)
	number    = regexp.MustCompile(`\d+`)
)

func FuzzValidateValue(f *testing.F) {
	for _, seed := range []string{"", "sk-abc", "a\nb", "\t", "\x7f", "\u0085", " x", "x\u00a0", "\xff", "ok value"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		err := ValidateValue(v)
		if err != nil {
			// The message has a fixed shape, so it cannot carry the value.
			msg := codePoint.ReplaceAllString(err.Error(), "U+X")
			msg = number.ReplaceAllString(msg, "N")
			if !validateMessages.MatchString(msg) {
				t.Fatalf("unexpected message %q", err)
			}
			return
		}

		// An accepted value fits in an HTTP header field unchanged.
		if v == "" || len(v) > MaxValueLen || !utf8.ValidString(v) {
			t.Fatalf("accepted %q", v)
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] == 0x7f {
				t.Fatalf("accepted %q with control byte at %d", v, i)
			}
		}
		if strings.TrimSpace(v) != v {
			t.Fatalf("accepted %q with surrounding space", v)
		}

		// Mask shows at most a quarter of it.
		m := Mask(v)
		shown := utf8.RuneCountInString(strings.Replace(m, "...", "", 1))
		if m != "********" && shown*4 > utf8.RuneCountInString(v) {
			t.Fatalf("Mask(%q) = %q", v, m)
		}
	})
}

func TestEntryPrintsMasked(t *testing.T) {
	const value = "sk-live-0123456789abcdefghijklmnopqrstuvwxyz"
	e := Entry{
		Scope:   ForSandbox("dev"),
		Service: "openai",
		Value:   value,
		Updated: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}

	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d", "%10v"} {
		outputs = append(outputs,
			fmt.Sprintf(verb, e),
			fmt.Sprintf(verb, &e),
			fmt.Sprintf(verb, []Entry{e}),
			fmt.Sprintf(verb, struct{ E Entry }{e}),
		)
	}
	outputs = append(outputs, e.String(), e.GoString(), fmt.Sprint(e), fmt.Sprintln(e))

	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "entry", e)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "entry", e)
	outputs = append(outputs, logs.String())

	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(data))

	for _, out := range outputs {
		if strings.Contains(out, value) || strings.Contains(out, value[8:]) {
			t.Errorf("output contains the value: %s", out)
		}
	}

	// The masked form is there, so the outputs are still useful.
	for _, verb := range []string{"%v", "%+v", "%#v"} {
		out := fmt.Sprintf(verb, e)
		if !strings.Contains(out, Mask(value)) || !strings.Contains(out, "openai") {
			t.Errorf("%s output %s lacks the masked value or the service", verb, out)
		}
	}

	want := `{sandbox:dev openai sk-l...wxyz 2025-01-02 03:04:05 +0000 UTC}`
	if diff := cmp.Diff(want, e.String()); diff != "" {
		t.Errorf("String() mismatch (-want +got):\n%s", diff)
	}
}

func TestValuePrintsMasked(t *testing.T) {
	const value = "sk-ant-0123456789abcdefghijklmnopqrstuvwxyz"
	v := Value{Value: value, Services: []string{"anthropic"}}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		if out := fmt.Sprintf(verb, v); strings.Contains(out, value[8:]) {
			t.Errorf("%s prints the value: %s", verb, out)
		}
	}
}
