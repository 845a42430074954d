// Package secret keeps the API credentials that the proxy injects into
// requests: the Store interface, scopes (global or one sandbox), checks on
// values, masking for display, and an age-encrypted file backend.
//
// A secret value must never reach an error message, a log line or a
// listing. Nothing in this package puts one there: errors name the scope
// and service but never the value, and Entry prints its value masked
// however it is formatted.
package secret

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cordon-dev/cordon/internal/names"
)

// ErrExists is returned by Set, wrapped, when the scope already holds a
// secret for the service and replace was false.
var ErrExists = errors.New("secret already exists")

// ErrNotFound is returned by Delete, wrapped, when the scope holds no secret
// for the service.
var ErrNotFound = errors.New("no such secret")

// MaxValueLen is the longest secret value accepted, in bytes. Values end up
// in HTTP header fields, and servers commonly refuse a header block larger
// than 8 to 16 KiB.
const MaxValueLen = 16 << 10

// Store keeps secret values. Implementations are safe for concurrent use by
// several goroutines and by several processes sharing the same storage.
//
// It is an interface so that other backends (an OS keychain) can stand in
// for the encrypted file.
type Store interface {
	// Snapshot returns the current contents. It is called for every
	// proxied request, so it must be cheap when nothing has changed, and it
	// must see a change made by another process on the next call, without a
	// restart. A store that cannot be read is an error, never an empty
	// snapshot.
	Snapshot() (*Snapshot, error)

	// Set stores value for service in scope. When the scope already holds
	// a secret for the service, Set replaces it if replace is true and
	// otherwise returns an error wrapping ErrExists.
	Set(scope Scope, service, value string, replace bool) error

	// Delete removes the secret for service in scope, or returns an error
	// wrapping ErrNotFound.
	Delete(scope Scope, service string) error

	// DeleteScope removes every secret of one sandbox's scope and reports
	// how many there were. It refuses the global scope, so that a zero
	// Scope passed by mistake cannot wipe every shared credential.
	DeleteScope(scope Scope) (int, error)
}

// Scope says whom a secret is for. The zero value is the global scope,
// seen by every sandbox; a Scope with Sandbox set is seen only by that
// sandbox, where it takes precedence over a global secret for the same
// service.
type Scope struct {
	Sandbox string
}

// Global returns the global scope.
func Global() Scope { return Scope{} }

// ForSandbox returns the scope of the sandbox called name. The name is
// checked only when the scope is used (see Scope.Validate). ForSandbox("")
// is the global scope.
func ForSandbox(name string) Scope { return Scope{Sandbox: name} }

// IsGlobal reports whether s is the global scope.
func (s Scope) IsGlobal() bool { return s.Sandbox == "" }

// String returns "global" or "sandbox:NAME", the form ParseScope reads.
func (s Scope) String() string {
	if s.IsGlobal() {
		return "global"
	}
	return "sandbox:" + s.Sandbox
}

// Validate checks that a sandbox scope names a valid sandbox. The global
// scope is always valid.
func (s Scope) Validate() error {
	if s.IsGlobal() {
		return nil
	}
	return names.Check("sandbox", s.Sandbox)
}

// ParseScope reads the form String writes: "global" or "sandbox:NAME".
func ParseScope(s string) (Scope, error) {
	if s == "global" {
		return Global(), nil
	}
	name, ok := strings.CutPrefix(s, "sandbox:")
	if !ok {
		return Scope{}, fmt.Errorf("scope %q: want \"global\" or \"sandbox:NAME\"", s)
	}
	if err := names.Check("sandbox", name); err != nil {
		return Scope{}, fmt.Errorf("scope %q: %w", s, err)
	}
	return ForSandbox(name), nil
}

// MarshalText implements encoding.TextMarshaler with the String form.
func (s Scope) MarshalText() ([]byte, error) {
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseScope.
func (s *Scope) UnmarshalText(text []byte) error {
	scope, err := ParseScope(string(text))
	if err != nil {
		return err
	}
	*s = scope
	return nil
}

// Entry is one stored secret.
//
// Printing an Entry with any fmt verb, through slog, or encoding it as JSON
// never shows Value in full: fmt and slog show Mask(Value), and JSON leaves
// it out. One gap remains: fmt cannot call methods through an unexported
// struct field, so printing a struct that holds an Entry in an unexported
// field shows the value. Hold entries in exported fields or not at all.
type Entry struct {
	Scope   Scope     `json:"scope"`
	Service string    `json:"service"` // a provider name
	Value   string    `json:"-"`
	Updated time.Time `json:"updated"` // when the value was last set
}

// String returns the entry with its value masked, as %v prints it.
func (e Entry) String() string { return fmt.Sprint(e) }

// GoString returns the entry with its value masked, as %#v prints it.
func (e Entry) GoString() string { return fmt.Sprintf("%#v", e) }

// Format implements fmt.Formatter so that every verb, %#v and %+v
// included, prints the value masked.
func (e Entry) Format(f fmt.State, verb rune) {
	masked := Mask(e.Value)
	switch {
	case verb == 'v' && f.Flag('#'):
		fmt.Fprintf(f, "secret.Entry{Scope:%#v, Service:%q, Value:%q, Updated:%#v}",
			e.Scope, e.Service, masked, e.Updated)
	case verb == 'v' && f.Flag('+'):
		fmt.Fprintf(f, "{Scope:%v Service:%s Value:%s Updated:%v}",
			e.Scope, e.Service, masked, e.Updated)
	case verb == 'q':
		fmt.Fprintf(f, "%q", fmt.Sprintf("{%v %s %s %v}", e.Scope, e.Service, masked, e.Updated))
	default:
		fmt.Fprintf(f, "{%v %s %s %v}", e.Scope, e.Service, masked, e.Updated)
	}
}

// LogValue implements slog.LogValuer with the value masked.
func (e Entry) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("scope", e.Scope.String()),
		slog.String("service", e.Service),
		slog.String("value", Mask(e.Value)),
		slog.Time("updated", e.Updated),
	)
}

// ValidateValue checks that v can be stored and sent in an HTTP header
// field. It refuses an empty value, one longer than MaxValueLen, one that
// is not UTF-8, one that contains a control character (C0 including tab,
// DEL, C1), and one that starts or ends with white space. The error never
// contains the value or any part of it.
//
// Tab is refused although HTTP allows it inside a field value: no API key
// contains one, a tab in a pasted key is almost always a copying mistake,
// and a leading or trailing one would be stripped by the server and make
// the credential fail in a way that is hard to see. Leading and trailing
// spaces are refused for the same reason.
func ValidateValue(v string) error {
	if v == "" {
		return errors.New("secret value is empty")
	}
	if len(v) > MaxValueLen {
		return fmt.Errorf("secret value is %d bytes long; the limit is %d", len(v), MaxValueLen)
	}
	if !utf8.ValidString(v) {
		return errors.New("secret value is not valid UTF-8 text")
	}
	for i, r := range v {
		switch {
		case r == '\r' || r == '\n':
			return fmt.Errorf("secret value contains a line break at byte %d", i)
		case r == '\t':
			return fmt.Errorf("secret value contains a tab at byte %d", i)
		case unicode.IsControl(r):
			return fmt.Errorf("secret value contains control character U+%04X at byte %d", r, i)
		}
	}
	first, _ := utf8.DecodeRuneInString(v)
	last, _ := utf8.DecodeLastRuneInString(v)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return errors.New("secret value starts or ends with white space")
	}
	return nil
}

// maskShort is what Mask shows for a value too short to reveal any of.
const maskShort = "********"

// Mask returns a form of v that is safe to display. A value shorter than 16
// characters is shown as "********", whatever its length. A longer one shows
// one character in eight from each end, at most four, around "...": two for
// 16 to 23 characters, three for 24 to 31, four from 32 on. So at most a
// quarter of a value is ever shown, which is enough to tell keys apart.
//
// A value that is not valid UTF-8 or would show a non-printable character
// is shown as "********".
func Mask(v string) string {
	n := utf8.RuneCountInString(v)
	if n < 16 || !utf8.ValidString(v) {
		return maskShort
	}
	show := min(n/8, 4)

	// Byte offsets of the end of the head and the start of the tail.
	head, tail := 0, len(v)
	for range show {
		r, size := utf8.DecodeRuneInString(v[head:])
		if !unicode.IsPrint(r) {
			return maskShort
		}
		head += size
		r, size = utf8.DecodeLastRuneInString(v[:tail])
		if !unicode.IsPrint(r) {
			return maskShort
		}
		tail -= size
	}
	return v[:head] + "..." + v[tail:]
}
