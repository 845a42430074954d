package provider

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cordon-dev/cordon/internal/hostname"
	"github.com/cordon-dev/cordon/internal/names"
	"github.com/cordon-dev/cordon/internal/state"
)

// FileName is the registry's file in cordon's config directory.
const FileName = "providers.json"

// fileVersion is the schema version of providers.json.
const fileVersion = 1

// Spec is a registered provider as written in providers.json. Exactly one
// of Header, QueryParam and Basic chooses the credential form; with none,
// the form is "Authorization: Bearer".
type Spec struct {
	Name       string   `json:"name"`
	BaseURL    string   `json:"base_url"`
	Header     string   `json:"header,omitempty"`
	QueryParam string   `json:"query_param,omitempty"`
	Basic      bool     `json:"basic,omitempty"`
	CACert     string   `json:"ca_cert,omitempty"`
	Address    string   `json:"address,omitempty"`
	API        string   `json:"api,omitempty"`
	Env        []string `json:"env,omitempty"`
}

type file struct {
	Version   int    `json:"version"`
	Providers []Spec `json:"providers"`
}

// Errors a caller can branch on.
var (
	ErrUnknown  = errors.New("unknown provider")
	ErrExists   = errors.New("provider already exists")
	ErrBuiltin  = errors.New("name belongs to a built-in provider")
	ErrConflict = errors.New("base URL already served by another provider")
)

// Build checks a spec and turns it into a provider. It reads the CA file,
// if any, to make sure it holds PEM certificates.
func (s Spec) Build() (*Provider, error) {
	if err := names.Check("provider", s.Name); err != nil {
		return nil, err
	}
	if IsBuiltin(s.Name) {
		return nil, fmt.Errorf("%q: %w; choose another name", s.Name, ErrBuiltin)
	}
	endpoint, err := ParseBaseURL(s.BaseURL)
	if err != nil {
		return nil, err
	}
	p := &Provider{Name: s.Name, Endpoints: []Endpoint{endpoint}, Auth: Bearer}
	if s.API == string(APIAnthropic) {
		// Anthropic's clients send their key in x-api-key.
		p.Auth = Auth{Kind: AuthHeader, Header: "X-Api-Key"}
	}

	forms := 0
	if s.Header != "" {
		forms++
		if p.Auth, err = ParseHeaderSpec(s.Header); err != nil {
			return nil, err
		}
	}
	if s.QueryParam != "" {
		forms++
		if p.Auth, err = ParseQueryParam(s.QueryParam); err != nil {
			return nil, err
		}
	}
	if s.Basic {
		forms++
		p.Auth = Auth{Kind: AuthBasic, Header: "Authorization"}
	}
	if forms > 1 {
		return nil, errors.New("choose one credential form: a header, a query parameter or basic")
	}

	if p.API, err = ParseAPI(s.API); err != nil {
		return nil, err
	}
	for _, v := range s.Env {
		if err := checkEnvName(v); err != nil {
			return nil, err
		}
	}
	p.Env = slices.Clone(s.Env)

	if s.CACert != "" {
		if _, err := LoadCACert(s.CACert); err != nil {
			return nil, err
		}
		p.CACert = s.CACert
	}
	if s.Address != "" {
		addr, err := netip.ParseAddr(s.Address)
		if err != nil || addr.Zone() != "" {
			return nil, fmt.Errorf("address %q is not an IP address", s.Address)
		}
		if hostname.IsIP(endpoint.Host) {
			return nil, errors.New("an address to connect to goes with a base URL that names a host, not an address")
		}
		p.Address = addr.Unmap()
	}
	return p, nil
}

// LoadCACert reads a PEM file of CA certificates into a pool. It is an
// error for the file to hold no certificate.
func LoadCACert(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	found := false
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA certificate %s: %v", path, err)
		}
		pool.AddCert(cert)
		found = true
	}
	if !found {
		return nil, fmt.Errorf("CA certificate %s holds no PEM certificate", path)
	}
	return pool, nil
}

// checkEnvName checks an environment variable name: letters, digits and
// underscores, not starting with a digit.
func checkEnvName(v string) error {
	if v == "" {
		return errors.New("environment variable name is empty")
	}
	if len(v) > maxSpecLen {
		return fmt.Errorf("environment variable name is %d bytes long; the limit is %d", len(v), maxSpecLen)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || c == '_' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return fmt.Errorf("environment variable name %q: use letters, digits and '_', not starting with a digit", v)
	}
	return nil
}

// Registry is the set of providers: the built-in catalog plus those
// registered in providers.json. It re-reads the file when another process
// changes it. A Registry is safe for concurrent use.
type Registry struct {
	path  string
	caDir string

	mu      sync.Mutex
	current *Set
	stamp   state.Stamp
	poll    state.Poll // skips the stat while no cordon process wrote
}

// OpenRegistry returns the registry kept in configDir. CA certificates
// given with --ca-cert are copied into configDir/provider-ca, so a provider
// keeps working when the original file moves.
func OpenRegistry(configDir string) *Registry {
	return &Registry{
		path:  filepath.Join(configDir, FileName),
		caDir: filepath.Join(configDir, "provider-ca"),
		poll:  state.NewPoll(configDir),
	}
}

// Path returns the registry file's path.
func (r *Registry) Path() string { return r.path }

// Set returns the current providers. When nothing changed it costs a
// memory load: cordon's writers bump a shared counter (see state.Changes),
// and a stat once a second catches hand edits.
func (r *Registry) Set() (*Set, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	due, gen := r.poll.Due(now)
	if r.current != nil && !due {
		return r.current, nil
	}
	stamp, err := state.StampOf(r.path)
	if err != nil {
		return nil, fmt.Errorf("reading providers: %w", err)
	}
	if r.current != nil && stamp == r.stamp {
		r.poll.Seen(gen, now)
		return r.current, nil
	}
	data, err := os.ReadFile(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		data = nil
	} else if err != nil {
		return nil, fmt.Errorf("reading providers: %w", err)
	}
	specs, err := decode(r.path, data)
	if err != nil {
		return nil, err
	}
	set, err := newSet(specs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.path, err)
	}
	r.current, r.stamp = set, stamp
	r.poll.Seen(gen, now)
	return set, nil
}

func decode(path string, data []byte) ([]Spec, error) {
	if data == nil {
		return nil, nil
	}
	var f file
	if err := state.DecodeVersioned(path, data, fileVersion, &f); err != nil {
		return nil, err
	}
	return f.Providers, nil
}

// Add registers a provider. An existing provider of the same name is
// replaced only with force. The CA file, if any, is copied into the
// registry's own directory once the provider is known to be valid.
func (r *Registry) Add(spec Spec, force bool) (*Provider, error) {
	if _, err := spec.Build(); err != nil {
		return nil, err
	}

	var added *Provider
	err := state.Update(r.path, 0o600, func(old []byte) ([]byte, error) {
		specs, err := decode(r.path, old)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(specs, func(s Spec) bool { return s.Name == spec.Name })
		switch {
		case i >= 0 && !force:
			return nil, fmt.Errorf("%q: %w", spec.Name, ErrExists)
		case i >= 0:
			specs[i] = spec
		default:
			specs = append(specs, spec)
		}
		set, err := newSet(specs)
		if err != nil {
			return nil, err
		}
		added = set.Lookup(spec.Name)

		if spec.CACert != "" {
			copied, err := r.copyCA(spec.Name, spec.CACert)
			if err != nil {
				return nil, err
			}
			specs[slices.IndexFunc(specs, func(s Spec) bool { return s.Name == spec.Name })].CACert = copied
			added.CACert = copied
		}
		return state.EncodeJSON(file{Version: fileVersion, Providers: specs})
	})
	if err != nil {
		return nil, err
	}
	return added, nil
}

// copyCA stores a copy of a provider's CA certificate and returns its path.
func (r *Registry) copyCA(name, src string) (string, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("reading CA certificate: %w", err)
	}
	if err := state.EnsureDir(r.caDir); err != nil {
		return "", err
	}
	dst := filepath.Join(r.caDir, name+".pem")
	if err := state.WriteFile(dst, data, 0o644); err != nil {
		return "", err
	}
	return dst, nil
}

// Remove unregisters a provider. Built-ins cannot be removed.
func (r *Registry) Remove(name string) error {
	if IsBuiltin(name) {
		return fmt.Errorf("%q: %w and cannot be removed", name, ErrBuiltin)
	}
	var removed Spec
	err := state.Update(r.path, 0o600, func(old []byte) ([]byte, error) {
		specs, err := decode(r.path, old)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(specs, func(s Spec) bool { return s.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("%q: %w", name, ErrUnknown)
		}
		removed = specs[i]
		specs = slices.Delete(specs, i, i+1)
		return state.EncodeJSON(file{Version: fileVersion, Providers: specs})
	})
	if err != nil {
		return err
	}
	// The CA copy belongs to the registry; remove it with its provider.
	if removed.CACert != "" && filepath.Dir(removed.CACert) == r.caDir {
		os.Remove(removed.CACert)
	}
	return nil
}

// Set is an immutable snapshot of the providers, indexed for matching.
type Set struct {
	all    []*Provider
	byName map[string]*Provider
	hosts  index
}

// newSet builds a set from the built-ins and the registered specs. Two
// providers with the same name, or the same endpoint, are an error.
func newSet(specs []Spec) (*Set, error) {
	s := &Set{byName: map[string]*Provider{}}
	s.all = Builtins()
	for _, p := range s.all {
		s.byName[p.Name] = p
	}
	seen := map[Endpoint]string{}
	for _, p := range s.all {
		for _, e := range p.Endpoints {
			seen[e] = p.Name
		}
	}
	for _, spec := range specs {
		p, err := spec.Build()
		if err != nil {
			return nil, err
		}
		if _, dup := s.byName[p.Name]; dup {
			return nil, fmt.Errorf("provider %q is registered twice", p.Name)
		}
		for _, e := range p.Endpoints {
			if other, dup := seen[e]; dup {
				return nil, fmt.Errorf("%s: %w (%s)", e, ErrConflict, other)
			}
			seen[e] = p.Name
		}
		s.all = append(s.all, p)
		s.byName[p.Name] = p
	}
	s.hosts = newIndex(s.all)
	return s, nil
}

// All returns every provider: the built-ins in catalog order, then the
// registered ones in the order they were added.
func (s *Set) All() []*Provider { return s.all }

// Lookup returns the named provider, or nil.
func (s *Set) Lookup(name string) *Provider { return s.byName[name] }

// Match finds the provider that serves a request to scheme://host:port/path.
// host must be normalised with hostname.Normalize; path is the escaped path.
func (s *Set) Match(scheme, host string, port int, path string) Match {
	return s.hosts.match(scheme, host, port, path)
}

// HasHost reports whether any provider has an endpoint on host.
func (s *Set) HasHost(host string) bool { return len(s.hosts[host]) > 0 }

// AddressFor returns the address a provider registered for host:port with
// --resolve, to be dialed instead of resolving the name.
func (s *Set) AddressFor(host string, port int) (netip.Addr, bool) {
	for _, r := range s.hosts[host] {
		if r.endpoint.Port == port && r.provider.Address.IsValid() {
			return r.provider.Address, true
		}
	}
	return netip.Addr{}, false
}

// CACertFor returns the CA certificate path that a provider registered for
// an endpoint on scheme://host:port, or "" when none did (the system roots
// then verify it). Every path on that host is verified with it, so that
// requests outside the base path still reach the server.
func (s *Set) CACertFor(scheme, host string, port int) string {
	for _, r := range s.hosts[host] {
		e := r.endpoint
		if e.Scheme == scheme && e.Port == port && r.provider.CACert != "" {
			return r.provider.CACert
		}
	}
	return ""
}
