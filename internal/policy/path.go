package policy

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// pathPattern is a rule's --path: segments separated by '/', where a
// segment "*" matches exactly one segment and "**" any number of them,
// including none. Empty segments are ignored on both sides, so "/v1/"
// and "/v1" are the same pattern and "//v1" the same request path.
type pathPattern struct {
	raw  string   // canonical form, as stored
	segs []string // decoded segments
}

// maxPathPattern bounds a --path value.
const maxPathPattern = 1024

// parsePathPattern checks a --path value and returns its canonical form.
func parsePathPattern(s string) (pathPattern, error) {
	if s == "" {
		return pathPattern{}, errors.New("empty path pattern")
	}
	if len(s) > maxPathPattern {
		return pathPattern{}, fmt.Errorf("path pattern is longer than %d characters", maxPathPattern)
	}
	if s[0] != '/' {
		return pathPattern{}, fmt.Errorf("path pattern %q must start with '/'", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c <= ' ' || c == 0x7f || c >= 0x80:
			return pathPattern{}, fmt.Errorf("path pattern %q contains spaces, control or non-ASCII characters; percent-encode them", s)
		case c == '?' || c == '#':
			return pathPattern{}, fmt.Errorf("path pattern %q has a query or fragment; give the path only", s)
		case c == '\\':
			return pathPattern{}, fmt.Errorf("path pattern %q contains '\\'", s)
		}
	}

	var raw []string
	p := pathPattern{}
	for seg := range strings.SplitSeq(s[1:], "/") {
		if seg == "" {
			continue
		}
		if strings.Contains(seg, "*") && seg != "*" && seg != "**" {
			return pathPattern{}, fmt.Errorf("path pattern %q: '*' and '**' must be whole segments, as in /v1/*/files or /v1/**", s)
		}
		decoded, err := url.PathUnescape(seg)
		if err != nil {
			return pathPattern{}, fmt.Errorf("path pattern %q has an invalid percent-encoding", s)
		}
		if decoded == "." || decoded == ".." || strings.ContainsAny(decoded, "/\\") {
			return pathPattern{}, fmt.Errorf("path pattern %q has '.' or '..' segments, or an encoded '/' or '\\'", s)
		}
		if decoded != seg && strings.Contains(decoded, "*") {
			return pathPattern{}, fmt.Errorf("path pattern %q: an encoded '*' is ambiguous", s)
		}
		// Two "**" in a row mean the same as one; keeping one bounds the
		// matcher's work.
		if seg == "**" && len(raw) > 0 && raw[len(raw)-1] == "**" {
			continue
		}
		raw = append(raw, seg)
		p.segs = append(p.segs, decoded)
	}
	p.raw = "/" + strings.Join(raw, "/")
	return p, nil
}

// requestPath is a request's path split into decoded segments, ready to be
// matched against path patterns.
type requestPath struct {
	segs []string
	// ambiguous is set when the path has "." or ".." segments, an encoded
	// '/' or '\', or a broken percent-encoding: an upstream may read such a
	// path as another one, so no path pattern can judge it.
	ambiguous bool
}

// splitRequestPath decodes an escaped request path. A query, if the caller
// left one on, is dropped.
func splitRequestPath(escaped string) requestPath {
	if i := strings.IndexByte(escaped, '?'); i >= 0 {
		escaped = escaped[:i]
	}
	var r requestPath
	for seg := range strings.SplitSeq(escaped, "/") {
		if seg == "" {
			continue
		}
		if strings.IndexByte(seg, '%') >= 0 {
			decoded, err := url.PathUnescape(seg)
			if err != nil {
				r.ambiguous = true
				continue
			}
			seg = decoded
		}
		if seg == "." || seg == ".." || strings.ContainsAny(seg, "/\\") {
			r.ambiguous = true
		}
		r.segs = append(r.segs, seg)
	}
	return r
}

// match reports whether the pattern covers the path's segments. With fold
// set, literal segments compare without regard to letter case: a deny
// rule uses that, since some servers ignore case in paths.
func (p *pathPattern) match(path []string, fold bool) bool {
	return matchSegments(p.segs, path, fold)
}

// matchSegments matches pattern against path. "**" works like '*' in a
// file name glob and "*" like '?': on a mismatch the matcher returns to the
// last "**" and lets it take one more segment. That bounds the work by the
// product of the two lengths, however many "**" the pattern holds, so a
// crafted request path cannot make it slow.
func matchSegments(pattern, path []string, fold bool) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(path) {
		switch {
		case pi < len(pattern) && pattern[pi] == "**":
			star, mark = pi, si
			pi++
		case pi < len(pattern) && segmentMatch(pattern[pi], path[si], fold):
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == "**" {
		pi++
	}
	return pi == len(pattern)
}

func segmentMatch(pattern, seg string, fold bool) bool {
	return pattern == "*" || pattern == seg || fold && strings.EqualFold(pattern, seg)
}

// parseMethod checks a --method value: an HTTP method token, returned in
// upper case.
func parseMethod(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty method")
	}
	if len(s) > 32 {
		return "", fmt.Errorf("method %q is too long", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || c == '!' || c == '+' {
			continue
		}
		return "", fmt.Errorf("method %q is not an HTTP method name", s)
	}
	return strings.ToUpper(s), nil
}
