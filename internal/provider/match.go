package provider

import (
	"sort"
	"strings"
)

// Reason says why a request gets no credential.
type Reason string

const (
	// ReasonNone means a provider matched.
	ReasonNone Reason = ""
	// ReasonNoProvider: no provider serves this host.
	ReasonNoProvider Reason = "no provider for this host"
	// ReasonPlainHTTP: the provider's base URL is https but the request
	// is plain http, which would expose the credential on the wire.
	ReasonPlainHTTP Reason = "plain HTTP to a provider whose base URL is https"
	// ReasonScheme: the request's scheme differs from the base URL's.
	ReasonScheme Reason = "scheme differs from the provider's base URL"
	// ReasonPort: the provider serves this host on another port.
	ReasonPort Reason = "port differs from the provider's base URL"
	// ReasonPath: the path lies outside the provider's base path.
	ReasonPath Reason = "path outside the provider's base URL"
	// ReasonDotSegments: the path has "." or ".." segments (possibly
	// percent-encoded), which an upstream may resolve to a path outside
	// the base path.
	ReasonDotSegments Reason = "path has dot segments"
)

// Match is the outcome of looking up a request's destination.
type Match struct {
	// Provider serves the request; nil when none does.
	Provider *Provider
	// Endpoint is the provider endpoint that matched.
	Endpoint Endpoint
	// Reason says why no provider serves it.
	Reason Reason
	// Near is the provider that serves this host elsewhere (another port,
	// scheme or path) when Provider is nil, for diagnostics.
	Near *Provider
}

// route is one endpoint in the host index.
type route struct {
	endpoint Endpoint
	provider *Provider
}

// index maps a normalised host to its routes, longest base path first.
type index map[string][]route

func newIndex(providers []*Provider) index {
	idx := index{}
	for _, p := range providers {
		for _, e := range p.Endpoints {
			idx[e.Host] = append(idx[e.Host], route{e, p})
		}
	}
	for _, routes := range idx {
		sort.SliceStable(routes, func(i, j int) bool {
			return len(routes[i].endpoint.Path) > len(routes[j].endpoint.Path)
		})
	}
	return idx
}

// match finds the provider for a request. host must be normalised (see
// hostname.Normalize); path is the request's escaped path.
func (idx index) match(scheme, host string, port int, path string) Match {
	routes := idx[host]
	if len(routes) == 0 {
		return Match{Reason: ReasonNoProvider}
	}
	if path == "" {
		path = "/"
	}

	// Keep the most telling reason: the first route that agrees on the
	// most of scheme, port and path explains best why nothing matched.
	m := Match{Reason: ReasonNoProvider}
	rank := -1
	miss := func(r route, reason Reason, score int) {
		if score > rank {
			m.Reason, m.Near, rank = reason, r.provider, score
		}
	}
	for _, r := range routes {
		e := r.endpoint
		if !underBase(path, e.Path) {
			miss(r, ReasonPath, 0)
			continue
		}
		if scheme != e.Scheme {
			if scheme == "http" && e.Scheme == "https" {
				miss(r, ReasonPlainHTTP, 2)
			} else {
				miss(r, ReasonScheme, 2)
			}
			continue
		}
		if port != e.Port {
			miss(r, ReasonPort, 1)
			continue
		}
		if hasDotSegment(path) {
			miss(r, ReasonDotSegments, 3)
			continue
		}
		return Match{Provider: r.provider, Endpoint: e}
	}
	return m
}

// underBase reports whether path lies under base on a segment boundary:
// "/v1" covers "/v1", "/v1/" and "/v1/chat" but not "/v10".
func underBase(path, base string) bool {
	if base == "" {
		return true
	}
	if !strings.HasPrefix(path, base) {
		return false
	}
	return len(path) == len(base) || path[len(base)] == '/'
}

// dotAndParam decodes the escapes that could hide a dot segment.
var dotAndParam = strings.NewReplacer("%2e", ".", "%3b", ";")

// hasDotSegment reports whether an escaped path has a "." or ".." segment,
// literally or percent-encoded, or an encoded slash or backslash that an
// upstream might decode into a segment boundary. A segment's path
// parameters (from ";") are left out first, as servers that strip them
// do, so "..;x" counts as "..".
func hasDotSegment(path string) bool {
	for _, seg := range strings.Split(path, "/") {
		if seg == "" {
			continue
		}
		if strings.Contains(seg, "%") {
			lower := strings.ToLower(seg)
			if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
				return true
			}
			seg = dotAndParam.Replace(lower)
		}
		if strings.Contains(seg, "\\") {
			return true
		}
		seg, _, _ = strings.Cut(seg, ";")
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
