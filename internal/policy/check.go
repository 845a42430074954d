package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/cordon-dev/cordon/internal/hostname"
	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/secret"
)

// NoCredential says why a request would get no credential. The values are
// stable; "policy check --json" prints them.
type NoCredential string

const (
	// NoCredentialNone: a credential would be injected.
	NoCredentialNone NoCredential = ""
	// NoCredentialRefused: the request would not be sent at all.
	NoCredentialRefused NoCredential = "refused"
	// NoCredentialBypassed: the host is tunnelled without interception.
	NoCredentialBypassed NoCredential = "bypassed"
	// NoCredentialNoProvider: no provider serves this host.
	NoCredentialNoProvider NoCredential = "no_provider"
	// NoCredentialPath: the path lies outside the provider's base URL.
	NoCredentialPath NoCredential = "path_outside_base_url"
	// NoCredentialPlainHTTP: plain HTTP to a provider whose base URL is
	// https.
	NoCredentialPlainHTTP NoCredential = "plain_http"
	// NoCredentialScheme: the scheme differs from the base URL's.
	NoCredentialScheme NoCredential = "scheme_differs"
	// NoCredentialPort: the provider serves this host on another port.
	NoCredentialPort NoCredential = "port_differs"
	// NoCredentialDotSegments: the path has dot segments or encoded
	// slashes.
	NoCredentialDotSegments NoCredential = "dot_segments"
	// NoCredentialNoSecret: no secret for the provider in the sandbox's
	// scope or the global one.
	NoCredentialNoSecret NoCredential = "no_secret"
	// NoCredentialOtherSandbox: a secret for the provider exists, but
	// only in other sandboxes' scopes.
	NoCredentialOtherSandbox NoCredential = "secret_in_other_sandbox"
)

// Diagnosis is what "cordon policy check" reports about one URL: what the
// proxy would decide and inject, worked out without sending anything.
type Diagnosis struct {
	Sandbox string
	Method  string
	Scheme  string
	Host    string // normalised
	Port    int
	Path    string // escaped, without the query

	// Decision is the deciding outcome: the connection's when it is
	// refused or bypassed, otherwise the request's.
	Decision Decision
	// Allowed is whether the request would be sent. AddressError, when
	// set, is why a host given as an address is refused even though the
	// rules allow it.
	Allowed      bool
	AddressError *BlockedAddressError
	// Intercepted is set when the proxy would see the request (always for
	// plain HTTP); Bypassed when it would tunnel it blind.
	Intercepted, Bypassed bool

	// Provider serves the request and Endpoint is its base URL that
	// matched; Provider is nil when none does. Near is the provider that
	// serves this host elsewhere (another path, port or scheme).
	Provider *provider.Provider
	Endpoint provider.Endpoint
	Near     *provider.Provider
	// SecretScope is the scope whose secret would be injected ("global" or
	// "sandbox:NAME"), with Provider.Auth saying in which form.
	SecretScope string
	// NoCredential says why nothing would be injected, and OtherScopes
	// lists the scopes that do hold a secret for the provider when
	// NoCredential is NoCredentialOtherSandbox.
	NoCredential NoCredential
	OtherScopes  []string
}

// Injected reports whether a credential would be injected.
func (d *Diagnosis) Injected() bool { return d.SecretScope != "" }

// NoCredentialReason explains NoCredential in a sentence, or returns "".
func (d *Diagnosis) NoCredentialReason() string {
	name := func(p *provider.Provider) string {
		if p == nil {
			return "the provider"
		}
		return "provider " + p.Name
	}
	switch d.NoCredential {
	case NoCredentialRefused:
		return "the request is refused"
	case NoCredentialBypassed:
		return "the host is bypassed: tunnelled without interception, so nothing is injected"
	case NoCredentialNoProvider:
		return "no provider for " + d.Host + "; register one with cordon provider add"
	case NoCredentialPath:
		return "the path lies outside the base URL of " + name(d.Near) + " (" + baseURLs(d.Near, d.Host) + ")"
	case NoCredentialPlainHTTP:
		return "plain HTTP, but the base URL of " + name(d.Near) + " is https (" + baseURLs(d.Near, d.Host) +
			"); the credential is never sent unencrypted"
	case NoCredentialScheme:
		return "the scheme differs from the base URL of " + name(d.Near) + " (" + baseURLs(d.Near, d.Host) + ")"
	case NoCredentialPort:
		return "port " + strconv.Itoa(d.Port) + " differs from the base URL of " + name(d.Near) +
			" (" + baseURLs(d.Near, d.Host) + ")"
	case NoCredentialDotSegments:
		return "the path has dot segments or encoded slashes, which could lead outside the base URL"
	case NoCredentialNoSecret:
		scope := "the global scope"
		if d.Sandbox != "" {
			scope = "sandbox:" + d.Sandbox + " or the global scope"
		}
		return "no secret for " + d.Provider.Name + " in " + scope + "; store one with cordon secret set " +
			d.Provider.Name
	case NoCredentialOtherSandbox:
		from := "a request from no sandbox"
		if d.Sandbox != "" {
			from = "sandbox:" + d.Sandbox
		}
		return "the secret for " + d.Provider.Name + " is stored only for " + strings.Join(d.OtherScopes, ", ") +
			", not for " + from + " or globally"
	}
	return ""
}

// baseURLs lists a provider's base URLs on host.
func baseURLs(p *provider.Provider, host string) string {
	if p == nil {
		return ""
	}
	var out []string
	for _, e := range p.Endpoints {
		if e.Host == host {
			out = append(out, e.String())
		}
	}
	return strings.Join(out, ", ")
}

// ParseCheckURL reads the URL "policy check" is given: an absolute http or
// https URL. It returns the scheme, normalised host, port and escaped path
// ("/" when empty); the query is dropped.
func ParseCheckURL(raw string) (scheme, host string, port int, path string, err error) {
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c == 0x7f {
			return "", "", 0, "", errors.New("URL contains spaces or control characters")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", 0, "", fmt.Errorf("%q is not a URL", raw)
	}
	switch {
	case u.Scheme == "":
		return "", "", 0, "", fmt.Errorf("URL %q has no scheme; write it as https://%s", raw, raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", "", 0, "", fmt.Errorf("URL %q: the proxy handles http and https only", raw)
	case u.Opaque != "" || u.Host == "":
		return "", "", 0, "", fmt.Errorf("URL %q has no host", raw)
	}
	if host, err = hostname.Normalize(u.Hostname()); err != nil {
		return "", "", 0, "", fmt.Errorf("URL %q: %v", raw, err)
	}
	port = 443
	if u.Scheme == "http" {
		port = 80
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", "", 0, "", fmt.Errorf("URL %q: invalid port %q", raw, p)
		}
		port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return "", "", 0, "", fmt.Errorf("URL %q: empty port", raw)
	}
	path = u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return u.Scheme, host, port, path, nil
}

// Diagnose works out what the proxy would do with method (GET when empty)
// to rawURL from sandbox: whether the policy allows it and by which rule,
// whether the connection is intercepted, and which provider's credential
// would be injected from which scope, or why none would. secrets may be
// nil for an empty store. Names are not resolved, so the address checks
// are applied only to a host given as an address.
//
// An error means rawURL or method is malformed.
func (v *View) Diagnose(sandbox, method, rawURL string, secrets *secret.Snapshot) (*Diagnosis, error) {
	if method == "" {
		method = "GET"
	}
	method, err := parseMethod(method)
	if err != nil {
		return nil, err
	}
	scheme, host, port, path, err := ParseCheckURL(rawURL)
	if err != nil {
		return nil, err
	}
	d := &Diagnosis{
		Sandbox: sandbox, Method: method,
		Scheme: scheme, Host: host, Port: port, Path: path,
	}

	// An https request is judged first as a CONNECT, then, if intercepted,
	// as a request; plain HTTP is seen as a request only.
	var connect Decision
	if scheme == "https" {
		connect = v.Connect(sandbox, host, port)
		switch connect.Action {
		case Deny:
			d.Decision, d.NoCredential = connect, NoCredentialRefused
			return d, nil
		case Bypass:
			d.Decision, d.Allowed, d.Bypassed, d.NoCredential = connect, true, true, NoCredentialBypassed
			d.checkAddress(v)
			return d, nil
		}
	}
	d.Decision = v.Request(sandbox, host, port, method, path)
	d.Intercepted = true
	if d.Decision.Action == Deny {
		d.NoCredential = NoCredentialRefused
		return d, nil
	}
	// A bypass rule that was overruled is what the user needs to hear
	// about: they expected a tunnel.
	if connect.BypassIgnored {
		d.Decision = connect
	}
	d.Allowed = true
	if !d.checkAddress(v) {
		return d, nil
	}

	// The credential, as the proxy would find it.
	var m provider.Match
	if v.providers != nil {
		m = v.providers.Match(scheme, host, port, path)
	} else {
		m = provider.Match{Reason: provider.ReasonNoProvider}
	}
	d.Near = m.Near
	if m.Provider == nil {
		d.NoCredential = noCredentialFor(m.Reason)
		return d, nil
	}
	d.Provider, d.Endpoint = m.Provider, m.Endpoint
	if entry, ok := secrets.Lookup(sandbox, m.Provider.Name); ok {
		d.SecretScope = entry.Scope.String()
		return d, nil
	}
	d.NoCredential = NoCredentialNoSecret
	for _, e := range secrets.Entries() {
		if e.Service == m.Provider.Name && !slices.Contains(d.OtherScopes, e.Scope.String()) {
			d.OtherScopes = append(d.OtherScopes, e.Scope.String())
		}
	}
	if len(d.OtherScopes) > 0 {
		d.NoCredential = NoCredentialOtherSandbox
	}
	return d, nil
}

// checkAddress applies the address checks to a host given as an address,
// and reports whether the request survives them.
func (d *Diagnosis) checkAddress(v *View) bool {
	addr, err := netip.ParseAddr(d.Host)
	if err != nil {
		return true
	}
	var blocked *BlockedAddressError
	if errors.As(v.CheckAddress(d.Sandbox, d.Host, d.Port, addr), &blocked) {
		d.AddressError = blocked
		d.Allowed = false
		d.NoCredential = NoCredentialRefused
		return false
	}
	return true
}

func noCredentialFor(r provider.Reason) NoCredential {
	switch r {
	case provider.ReasonPlainHTTP:
		return NoCredentialPlainHTTP
	case provider.ReasonScheme:
		return NoCredentialScheme
	case provider.ReasonPort:
		return NoCredentialPort
	case provider.ReasonPath:
		return NoCredentialPath
	case provider.ReasonDotSegments:
		return NoCredentialDotSegments
	}
	return NoCredentialNoProvider
}
