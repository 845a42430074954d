// Package provider describes the APIs whose credentials cordon injects: a
// built-in catalog of public services and the providers a user registers
// by base URL. It also decides which provider, if any, serves a request.
package provider

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	"github.com/cordon-dev/cordon/internal/hostname"
)

// Provider is an API that cordon holds a credential for.
type Provider struct {
	Name    string
	Title   string // human-readable name of a built-in, "" for registered ones
	Builtin bool

	// Endpoints are the destinations its credential may be sent to. A
	// built-in has one per host; a registered provider has its base URL.
	Endpoints []Endpoint

	Auth Auth

	// CACert is the path of a PEM file with the CA that signs the
	// provider's server certificate, trusted for its endpoints in addition
	// to the system roots. Empty means the system roots alone.
	CACert string

	// Address, when valid, is where the provider's host is reached instead
	// of resolving its name: for a server that has a name in its
	// certificate but none in DNS.
	Address netip.Addr

	// API is the API style the provider speaks, which lets sandboxes point
	// the matching SDK variables at it. Empty when not declared.
	API API

	// Env lists the environment variables agents read this provider's key
	// from. Sandboxes set them to a placeholder.
	Env []string
}

// BaseURL returns the provider's first endpoint as a URL string.
func (p *Provider) BaseURL() string {
	if len(p.Endpoints) == 0 {
		return ""
	}
	return p.Endpoints[0].String()
}

// API is an API style. Sandboxes set OPENAI_BASE_URL or ANTHROPIC_BASE_URL
// for providers that declare one.
type API string

const (
	APINone      API = ""
	APIOpenAI    API = "openai"
	APIAnthropic API = "anthropic"
)

// ParseAPI checks an --api value.
func ParseAPI(s string) (API, error) {
	switch API(s) {
	case APINone, APIOpenAI, APIAnthropic:
		return API(s), nil
	}
	return "", fmt.Errorf("unknown API style %q: use openai or anthropic", s)
}

// Endpoint is where a credential may go: a scheme, host and port, and a
// base path that request paths must lie under.
type Endpoint struct {
	Scheme string // "https" or "http"
	Host   string // normalised by hostname.Normalize
	Port   int
	Path   string // without a trailing slash; "" covers every path
}

// String returns the endpoint as a URL, leaving out a default port.
func (e Endpoint) String() string {
	host := e.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if e.Port != defaultPort(e.Scheme) {
		host += ":" + strconv.Itoa(e.Port)
	}
	return e.Scheme + "://" + host + e.Path
}

func defaultPort(scheme string) int {
	if scheme == "http" {
		return 80
	}
	return 443
}

// ParseBaseURL parses a provider's base URL. It must be an absolute http or
// https URL with a host and no user information, query or fragment. The
// path's trailing slash is dropped, so "https://h/v1/" covers the same
// paths as "https://h/v1".
func ParseBaseURL(s string) (Endpoint, error) {
	if s == "" {
		return Endpoint{}, errors.New("base URL is empty")
	}
	if len(s) > maxURLLen {
		return Endpoint{}, fmt.Errorf("base URL is %d bytes long; the limit is %d", len(s), maxURLLen)
	}
	if strings.TrimSpace(s) != s {
		return Endpoint{}, errors.New("base URL has leading or trailing spaces")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] == 0x7f {
			return Endpoint{}, errors.New("base URL contains spaces or control characters")
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return Endpoint{}, fmt.Errorf("base URL %q is not a URL", s)
	}
	switch {
	case u.Scheme == "":
		return Endpoint{}, fmt.Errorf("base URL %q is relative; it needs a scheme and host, like https://llm.example.com/v1", s)
	case u.Scheme != "http" && u.Scheme != "https":
		return Endpoint{}, fmt.Errorf("base URL %q: scheme %q is not supported; use https (or http)", s, u.Scheme)
	case u.Opaque != "" || u.Host == "":
		return Endpoint{}, fmt.Errorf("base URL %q has no host", s)
	case u.User != nil:
		return Endpoint{}, fmt.Errorf("base URL %q contains user information; store credentials with cordon secret set instead", s)
	case u.RawQuery != "" || u.ForceQuery:
		return Endpoint{}, fmt.Errorf("base URL %q has a query; give the path only", s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return Endpoint{}, fmt.Errorf("base URL %q has a fragment", s)
	}

	host, err := hostname.Normalize(u.Hostname())
	if err != nil {
		return Endpoint{}, fmt.Errorf("base URL %q: %v", s, err)
	}
	port := defaultPort(u.Scheme)
	if p := u.Port(); p != "" {
		port, err = strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return Endpoint{}, fmt.Errorf("base URL %q: invalid port %q", s, p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return Endpoint{}, fmt.Errorf("base URL %q: empty port", s)
	}

	path := strings.TrimRight(u.EscapedPath(), "/")
	if hasDotSegment(path) {
		return Endpoint{}, fmt.Errorf("base URL %q: path has '.' or '..' segments, or an encoded '/' or '\\'", s)
	}
	if strings.Contains(path, "//") {
		return Endpoint{}, fmt.Errorf("base URL %q: path has an empty segment", s)
	}
	return Endpoint{Scheme: u.Scheme, Host: host, Port: port, Path: path}, nil
}

// Limits on what a provider's definition may hold.
const (
	maxURLLen  = 2048
	maxSpecLen = 256 // a header spec, a query parameter or variable name
)

// AuthKind is the form a credential is sent in.
type AuthKind uint8

const (
	// AuthHeader sends the secret in a header, after an optional prefix.
	AuthHeader AuthKind = iota
	// AuthQuery sends the secret as a URL query parameter.
	AuthQuery
	// AuthBasic treats the secret as "user:password" and sends HTTP Basic
	// authentication.
	AuthBasic
)

// Auth is how a provider's credential is attached to a request.
type Auth struct {
	Kind   AuthKind
	Header string // canonical header name, for AuthHeader and AuthBasic
	Prefix string // for AuthHeader: the word before the secret, e.g. "Bearer"
	Param  string // for AuthQuery: the query parameter's name
}

// Bearer is the default credential form: "Authorization: Bearer <secret>".
var Bearer = Auth{Kind: AuthHeader, Header: "Authorization", Prefix: "Bearer"}

// String describes the form with a placeholder in place of the secret.
func (a Auth) String() string {
	switch a.Kind {
	case AuthQuery:
		return "query parameter " + a.Param + "=<secret>"
	case AuthBasic:
		return "Authorization: Basic <user:password>"
	}
	if a.Prefix == "" {
		return a.Header + ": <secret>"
	}
	return a.Header + ": " + a.Prefix + " <secret>"
}

// Spec returns the --header form of a header credential ("Authorization:
// Bearer", "x-api-key:"), or "" for the other kinds.
func (a Auth) Spec() string {
	if a.Kind != AuthHeader {
		return ""
	}
	if a.Prefix == "" {
		return a.Header + ":"
	}
	return a.Header + ": " + a.Prefix
}

// ParseHeaderSpec parses a --header value: "NAME: PREFIX" sends
// "NAME: PREFIX <secret>", "NAME:" (or just NAME) sends the raw secret.
func ParseHeaderSpec(s string) (Auth, error) {
	if len(s) > maxSpecLen {
		return Auth{}, fmt.Errorf("header is %d bytes long; the limit is %d", len(s), maxSpecLen)
	}
	name, prefix, _ := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	prefix = strings.TrimSpace(prefix)
	if name == "" {
		return Auth{}, fmt.Errorf("header %q has no name; use the form \"Authorization: Bearer\" or \"x-api-key:\"", s)
	}
	if !isToken(name) {
		return Auth{}, fmt.Errorf("header name %q contains characters not allowed in an HTTP header name", name)
	}
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; c < 0x20 || c == 0x7f || c >= 0x80 {
			return Auth{}, fmt.Errorf("header prefix %q contains control or non-ASCII characters", prefix)
		}
	}
	canonical := textproto.CanonicalMIMEHeaderKey(name)
	if hopByHop[canonical] {
		return Auth{}, fmt.Errorf("header %q is a hop-by-hop or proxy header and cannot carry a credential", name)
	}
	return Auth{Kind: AuthHeader, Header: canonical, Prefix: prefix}, nil
}

// hopByHop are headers the proxy removes before forwarding, so a
// credential in them would never arrive.
var hopByHop = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true,
	"Proxy-Authenticate": true, "Proxy-Authorization": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Host": true,
	"Content-Length": true,
}

// ParseQueryParam checks a --query-param name.
func ParseQueryParam(s string) (Auth, error) {
	if s == "" {
		return Auth{}, errors.New("query parameter name is empty")
	}
	if len(s) > maxSpecLen {
		return Auth{}, fmt.Errorf("query parameter name is %d bytes long; the limit is %d", len(s), maxSpecLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~') {
			return Auth{}, fmt.Errorf("query parameter name %q: use letters, digits, '-', '_', '.' and '~'", s)
		}
	}
	return Auth{Kind: AuthQuery, Param: s}, nil
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return s != ""
}

// Apply attaches secret to a request in this form, first removing every
// value the client sent for the same credential, so the upstream sees the
// stored credential once and nothing else. rawQuery is the request's
// escaped query; the updated one is returned.
func (a Auth) Apply(h http.Header, rawQuery, secret string) string {
	switch a.Kind {
	case AuthQuery:
		return setQueryParam(rawQuery, a.Param, secret)
	case AuthBasic:
		h.Del(a.Header)
		h[a.Header] = []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(secret))}
	default:
		h.Del(a.Header)
		if a.Prefix == "" {
			h[a.Header] = []string{secret}
		} else {
			h[a.Header] = []string{a.Prefix + " " + secret}
		}
	}
	return rawQuery
}

// WireForms returns each form in which Apply puts secret on the wire: the
// value itself and, where it differs, its encoding (Basic's base64, a query
// parameter's escaping). A response that echoes any of them gives the
// credential away, so all of them are what must not come back.
func (a Auth) WireForms(secret string) []string {
	forms := []string{secret}
	switch a.Kind {
	case AuthBasic:
		forms = append(forms, base64.StdEncoding.EncodeToString([]byte(secret)))
	case AuthQuery:
		if escaped := url.QueryEscape(secret); escaped != secret {
			forms = append(forms, escaped)
		}
	}
	return forms
}

// setQueryParam replaces every occurrence of name in an escaped query with
// one name=value pair at the end, leaving the other pairs untouched and in
// their order.
func setQueryParam(rawQuery, name, value string) string {
	var b strings.Builder
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		key, _, _ := strings.Cut(pair, "=")
		if k, err := url.QueryUnescape(key); err == nil && k == name || key == name {
			continue
		}
		if pair == "" {
			continue
		}
		b.WriteString(pair)
		b.WriteByte('&')
	}
	b.WriteString(url.QueryEscape(name))
	b.WriteByte('=')
	b.WriteString(url.QueryEscape(value))
	return b.String()
}
