// Package audit keeps cordon's request log: one event per request through
// the proxy, stored in an SQLite database under the state directory, and
// read back by `cordon policy log`.
//
// Writing never holds up the proxy. Record hands the event to a queue that
// a background goroutine drains into the database in batches; when the
// queue is full or the database cannot be written, events are dropped and
// counted, and the logger hears about it once per episode. Several proxies,
// in several processes, may write to one log at once.
//
// The log never holds a secret: an Event has no field for a header, and the
// proxy records request targets through RedactTarget, which keeps the names
// of query parameters and drops their values.
package audit

import (
	"path/filepath"
	"strings"
	"time"
)

// FileName is the request log's file in cordon's state directory.
const FileName = "audit.db"

// DefaultPath is where the request log lives for a given state directory.
// The proxy writes there and `cordon policy log` reads from there.
func DefaultPath(stateDir string) string {
	return filepath.Join(stateDir, FileName)
}

// Decisions an event can record.
const (
	DecisionAllow  = "allow"  // forwarded (intercepted, or a plain HTTP request)
	DecisionDeny   = "deny"   // refused by policy or by an address check
	DecisionBypass = "bypass" // tunnelled without interception
	DecisionError  = "error"  // allowed, but failed (upstream unreachable, bad TLS, ...)
)

// Event is one request through the proxy, or one connection it refused or
// tunnelled without looking inside.
type Event struct {
	ID          int64         // assigned by the log; zero in an event not yet stored
	Time        time.Time     // when the request started; zero means when Record was called
	Sandbox     string        // "" for the global scope (a standalone proxy)
	Method      string        // "CONNECT" for a refused or bypassed tunnel
	Scheme      string        // "https" or "http"
	Host        string        // the destination's name or address, never the Host header
	Port        int           // the destination's port
	Path        string        // escaped path and query names, from RedactTarget
	Status      int           // HTTP status sent to the client, 0 if none
	BytesIn     int64         // request body bytes from the client
	BytesOut    int64         // response body bytes to the client
	Duration    time.Duration // from the start of the request to the end of the response
	Intercepted bool          // TLS was terminated by the proxy
	Decision    string        // one of the Decision constants
	Rule        string        // the rule that decided, "" for the default
	Reason      string        // why the request was refused or what failed
	Injected    string        // the provider whose credential was injected
	NoInject    string        // why no credential was injected, when none was
}

// maxNameLen is the longest query parameter name RedactTarget keeps.
// Parameter names are short words; a long token in that position is more
// likely a credential than a name.
const maxNameLen = 32

// RedactTarget returns escapedPath followed by the names of the parameters
// in rawQuery, each with its value removed: "/v1/x" and "key=abc&alt=json"
// give "/v1/x?key=&alt=". A piece without "=" ("?sk-abc123") is a value
// with no name and becomes "*", as does a name that could itself be a
// credential: one longer than 32 bytes, or holding characters other than
// letters, digits and "-._~[]%". The proxy records targets only through
// this function, so that no query value ever reaches the log.
func RedactTarget(escapedPath, rawQuery string) string {
	if rawQuery == "" {
		return escapedPath
	}
	var b strings.Builder
	b.Grow(len(escapedPath) + len(rawQuery) + 1)
	b.WriteString(escapedPath)
	sep := byte('?')
	for piece := range strings.SplitSeq(rawQuery, "&") {
		if piece == "" {
			continue
		}
		b.WriteByte(sep)
		sep = '&'
		name, _, named := strings.Cut(piece, "=")
		if !named {
			b.WriteByte('*')
			continue
		}
		if !plausibleName(name) {
			name = "*"
		}
		b.WriteString(name)
		b.WriteByte('=')
	}
	return b.String()
}

// plausibleName reports whether s looks like a query parameter's name
// rather than a value put in its place.
func plausibleName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~[]%", c) >= 0:
		default:
			return false
		}
	}
	return true
}
