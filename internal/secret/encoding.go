package secret

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cordon-dev/cordon/internal/names"
)

// formatVersion is the version of the plaintext store format that this
// cordon reads and writes.
const formatVersion = 1

// storeFile is the plaintext inside the encrypted store:
//
//	{"version":1,"secrets":[{"scope":"global","service":"openai",
//	  "value":"...","updated":"2025-01-02T03:04:05Z"}]}
type storeFile struct {
	Version int            `json:"version"`
	Secrets []storedSecret `json:"secrets"`
}

type storedSecret struct {
	Scope   string    `json:"scope"` // as Scope.String writes it
	Service string    `json:"service"`
	Value   string    `json:"value"`
	Updated time.Time `json:"updated"`
}

// encodeEntries renders entries in the plaintext store format, sorted so
// that the same contents always give the same bytes.
func encodeEntries(entries []Entry) ([]byte, error) {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, compareEntries)

	file := storeFile{Version: formatVersion, Secrets: make([]storedSecret, len(sorted))}
	for i, e := range sorted {
		file.Secrets[i] = storedSecret{
			Scope:   e.Scope.String(),
			Service: e.Service,
			Value:   e.Value,
			Updated: e.Updated,
		}
	}
	data, err := json.Marshal(file)
	if err != nil {
		// Only an unencodable time can get here, and its message holds no
		// value.
		return nil, fmt.Errorf("encoding secret store: %w", err)
	}
	return data, nil
}

// decodeEntries parses the plaintext store format. It rejects other
// versions, unknown fields, data after the JSON object, invalid scopes,
// service names and values, and a service that appears twice in one scope.
//
// Error messages describe where the problem is but never quote the input,
// since it holds secret values.
func decodeEntries(data []byte) ([]Entry, error) {
	// Unmarshal checks that data is exactly one JSON value, so trailing
	// data is caught here.
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, describeDecodeError(err)
	}
	if head.Version == nil {
		return nil, errors.New("no \"version\" field")
	}
	if *head.Version != formatVersion {
		return nil, fmt.Errorf("format version %d is not supported (this cordon reads version %d)",
			*head.Version, formatVersion)
	}

	var file storeFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		return nil, describeDecodeError(err)
	}

	entries := make([]Entry, 0, len(file.Secrets))
	seen := make(map[entryKey]bool, len(file.Secrets))
	for i, s := range file.Secrets {
		e, err := s.entry()
		if err != nil {
			return nil, fmt.Errorf("secret %d: %w", i+1, err)
		}
		key := entryKey{e.Scope.Sandbox, e.Service}
		if seen[key] {
			return nil, fmt.Errorf("secret %d: a second secret for %s in the %s scope",
				i+1, e.Service, e.Scope)
		}
		seen[key] = true
		entries = append(entries, e)
	}
	return entries, nil
}

// entry checks one stored secret and converts it.
func (s storedSecret) entry() (Entry, error) {
	scope, err := ParseScope(s.Scope)
	if err != nil {
		return Entry{}, err
	}
	if err := names.Check("provider", s.Service); err != nil {
		return Entry{}, err
	}
	if err := ValidateValue(s.Value); err != nil {
		return Entry{}, err
	}
	return Entry{Scope: scope, Service: s.Service, Value: s.Value, Updated: s.Updated}, nil
}

// describeDecodeError turns an encoding/json error into one that does not
// quote the input: syntax errors may cite a character of a value, and
// unknown-field and time errors quote the text they could not use.
func describeDecodeError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax) && syntax.Error() == "unexpected end of JSON input":
		return errors.New("truncated JSON")
	case errors.As(err, &syntax):
		return fmt.Errorf("malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Errorf("JSON %s where an object was expected", jsonKind(typ.Value))
		}
		return fmt.Errorf("field %q holds the wrong type of JSON value", typ.Field)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// Not reached after Unmarshal has accepted the input; kept so
		// that a change of decoder cannot leak a raw message.
		return errors.New("truncated JSON")
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return errors.New("unknown field in the secret store")
	default:
		return errors.New("invalid JSON value in the secret store")
	}
}

// jsonKind returns the first word of an UnmarshalTypeError's Value ("string",
// "number", "array"...), dropping the number's digits that may follow it.
func jsonKind(value string) string {
	kind, _, _ := strings.Cut(value, " ")
	return kind
}
