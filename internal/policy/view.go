package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cordon-dev/cordon/internal/hostname"
	"github.com/cordon-dev/cordon/internal/provider"
)

// Decision is the outcome of evaluating a connection or a request.
type Decision struct {
	// Action is Allow, Deny or Bypass. The zero value, "", is none of
	// them; treat anything but Allow and Bypass as a refusal.
	Action Action
	// Source says what decided: SourceRule (a user rule), SourcePreset,
	// SourceProvider (the host of a registered provider) or SourceDefault
	// (nothing allowed it, or the host was invalid).
	Source Source
	// Rule is the rule that decided: a user rule for SourceRule, the
	// preset's entry for SourcePreset (with an empty ID; nil for the
	// allow-all preset), and nil otherwise. It points into the view and
	// must not be modified.
	Rule *Rule
	// Provider is the registered provider whose host this is, for
	// SourceProvider, and the provider that made a bypass rule be ignored
	// (see BypassIgnored). nil otherwise.
	Provider *provider.Provider
	// Deferred is set on an allowed connection when rules with a method
	// or path apply to its host: the proxy must intercept it and ask
	// Request for every request. Connect only.
	Deferred bool
	// BypassIgnored is set when a bypass rule matched but the connection
	// is intercepted anyway (Action is Allow), because a provider serves
	// the host (a blind tunnel would silently lose the credential) or
	// because method or path deny rules apply to it. Rule is the bypass
	// rule.
	BypassIgnored bool

	why        why
	host       string
	port       int
	method     string
	path       string
	presetName Preset
}

// why refines the reason beyond Action and Source.
type why uint8

const (
	whyNone why = iota
	whyBadHost
	whyBypassProvider
	whyBypassHTTPRules
	whyAmbiguousPath
	whyPerRequest // allowed for requests that match a method or path rule
)

// Reason explains the decision in one line, for the refusal the client
// sees, the log and "policy check": "denied by rule 3f9a12cd (deny
// **.example.com)", "no rule allows evil.example". It is computed on
// demand so that deciding costs no allocation.
func (d Decision) Reason() string {
	target := d.host
	if d.method != "" {
		target = d.method + " " + d.path + " on " + d.host
	}
	switch d.why {
	case whyBadHost:
		return "invalid host " + strconv.Quote(d.host)
	case whyBypassProvider:
		return "bypass rule " + d.Rule.ID + " ignored: provider " + d.Provider.Name +
			" serves " + d.host + ", so the connection is intercepted to inject its credential"
	case whyBypassHTTPRules:
		return "bypass rule " + d.Rule.ID + " ignored: method or path deny rules apply to " +
			d.host + ", so the connection is intercepted to judge each request"
	case whyAmbiguousPath:
		return "path of " + target + " has dot segments or encoded slashes, which method and path rules cannot judge"
	case whyPerRequest:
		return "allowed for requests that match " + describeRule(d.Rule, d.Source, d.presetName) +
			"; each request is checked"
	}
	switch {
	case d.Source == SourceDefault:
		return "no rule allows " + target
	case d.Source == SourceProvider:
		return "allowed as the host of provider " + d.Provider.Name
	case d.Source == SourcePreset && d.Rule == nil:
		return "allowed by the " + string(d.presetName) + " preset"
	case d.Action == Deny:
		return "denied by " + describeRule(d.Rule, d.Source, d.presetName)
	case d.Action == Bypass:
		return "bypassed by " + describeRule(d.Rule, d.Source, d.presetName) +
			": tunnelled without interception"
	}
	return "allowed by " + describeRule(d.Rule, d.Source, d.presetName)
}

func describeRule(r *Rule, source Source, preset Preset) string {
	if source == SourcePreset {
		return "the " + string(preset) + " preset (" + r.String() + ")"
	}
	return "rule " + r.ID + " (" + r.String() + ")"
}

// View is the policy and the providers at one moment, compiled for
// evaluation. It never changes after it is made and is safe for concurrent
// use; take a fresh one from Engine.View for each new connection so that
// changes apply.
type View struct {
	policy    *Policy
	providers *provider.Set
	self      []netip.AddrPort

	preset Preset
	// exact and wild index the name rules, user and preset together, by
	// the name (for KindName) or the domain below which they match (for
	// the wildcards); addrs holds the address and range rules.
	exact map[string][]*compiled
	wild  map[string][]*compiled
	addrs []*compiled
	// userAddrs repeats the user's address and range rules in a flat
	// form for CheckAddress, which runs for every address dialled.
	userAddrs []addrRule
	// served maps each host that any provider has an endpoint on to the
	// first such provider; registered holds the registered (not built-in)
	// providers' endpoints by host.
	served     map[string]*provider.Provider
	registered map[string][]endpointOf
}

// addrRule is a user rule on an address (as a full-length prefix) or a
// range.
type addrRule struct {
	prefix  netip.Prefix
	port    int
	sandbox string
	deny    bool
	rule    *Rule
}

type endpointOf struct {
	port     int
	provider *provider.Provider
}

// NewView compiles a policy (from Store.Load or NewPolicy; nil means the
// default) and a provider set. A nil set means no providers; self lists
// the proxy's own listening addresses, which CheckAddress always refuses
// (see ExpandListenAddr).
func NewView(p *Policy, set *provider.Set, self []netip.AddrPort) *View {
	if p == nil {
		p = defaultPolicy
	}
	v := &View{
		policy: p, providers: set, self: slices.Clone(self), preset: p.Preset,
		exact:      map[string][]*compiled{},
		wild:       map[string][]*compiled{},
		served:     map[string]*provider.Provider{},
		registered: map[string][]endpointOf{},
	}
	order := 0
	add := func(c *compiled) {
		c2 := *c
		c2.order = order
		order++
		switch c2.host.Kind {
		case KindName:
			v.exact[c2.host.Name] = append(v.exact[c2.host.Name], &c2)
		case KindOneLabel, KindAnyDepth:
			v.wild[c2.host.Name] = append(v.wild[c2.host.Name], &c2)
		default:
			v.addrs = append(v.addrs, &c2)
			// CheckAddress takes user rules only, and of deny rules only
			// those on whole connections: a method or path deny judges
			// requests, not addresses.
			if c2.source != SourceRule || c2.http && c2.rule.Action == Deny {
				break
			}
			prefix := c2.host.Prefix
			if c2.host.Kind == KindAddr {
				prefix = netip.PrefixFrom(c2.host.Addr, c2.host.Addr.BitLen())
			}
			v.userAddrs = append(v.userAddrs, addrRule{prefix, c2.host.Port, c2.rule.Sandbox,
				c2.rule.Action == Deny, c2.rule})
		}
	}
	for _, c := range p.compiledRules() {
		add(c)
	}
	for _, c := range presetRules[p.Preset] {
		add(c)
	}
	if set != nil {
		for _, prov := range set.All() {
			for _, e := range prov.Endpoints {
				if v.served[e.Host] == nil {
					v.served[e.Host] = prov
				}
				if !prov.Builtin {
					v.registered[e.Host] = append(v.registered[e.Host], endpointOf{e.Port, prov})
				}
			}
		}
	}
	return v
}

// Policy returns the policy the view was made from.
func (v *View) Policy() *Policy { return v.policy }

// Providers returns the provider set the view was made from; nil when it
// was made without one.
func (v *View) Providers() *provider.Set { return v.providers }

// target is a destination host in canonical form.
type target struct {
	name   string // normalised host name or address literal
	addr   netip.Addr
	isAddr bool
}

// canonical normalises host, without allocating when it is already a
// normalised name or a plain IPv4 address.
func canonical(host string) (target, bool) {
	if isCanonicalName(host) {
		return target{name: host}, true
	}
	if looksIPv4(host) {
		if addr, err := netip.ParseAddr(host); err == nil {
			// netip accepts only the dotted-quad form without leading
			// zeros, which is already canonical.
			return target{name: host, addr: addr, isAddr: true}, true
		}
	}
	name, err := hostname.Normalize(host)
	if err != nil {
		return target{}, false
	}
	if addr, ok := parseAddrFast(name); ok {
		return target{name: name, addr: addr, isAddr: true}, true
	}
	return target{name: name}, true
}

// isCanonicalName reports whether hostname.Normalize would return host
// unchanged as a name: lower-case ASCII labels of letters, digits, '-' and
// '_', none empty or longer than 63, not starting or ending with '-', and
// a last label that is not numeric.
func isCanonicalName(host string) bool {
	if host == "" || len(host) > hostname.MaxLen {
		return false
	}
	start := 0
	for i := 0; i <= len(host); i++ {
		if i < len(host) && host[i] != '.' {
			c := host[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
			continue
		}
		label := host[start:i]
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		if i == len(host) && isNumericLabel(label) {
			return false
		}
		start = i + 1
	}
	return true
}

// isNumericLabel reports whether a label reads as a number to legacy IPv4
// parsers: decimal, octal or 0x-prefixed hexadecimal.
func isNumericLabel(label string) bool {
	digits, hex := label, false
	if strings.HasPrefix(label, "0x") {
		digits, hex = label[2:], true
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if !('0' <= c && c <= '9' || hex && 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// tally collects the rules that match one connection or request. Each
// field holds the earliest matching rule of its kind (user rules come
// before preset rules).
type tally struct {
	deny, bypass, allow *compiled
	// perRequest is the earliest allow rule with a method or path, at
	// connection time, when no rule allows the whole host.
	perRequest *compiled
	// httpRules and httpDeny record that rules with a method or path apply
	// to the host (any action, and deny ones).
	httpRules, httpDeny bool
	// ambiguousDeny is set when a deny rule with a path applies to the
	// request's host and method but the path cannot be judged.
	ambiguousDeny bool
}

func earliest(held, c *compiled) *compiled {
	if held == nil || c.order < held.order {
		return c
	}
	return held
}

// request is the method and path of an intercepted request. The path is
// split only when a rule with a path needs it, so that requests to hosts
// without such rules cost no allocation.
type request struct {
	method  string
	rawPath string
	path    requestPath
	split   bool
}

func (r *request) segments() *requestPath {
	if !r.split {
		r.path, r.split = splitRequestPath(r.rawPath), true
	}
	return &r.path
}

// note adds one rule that matches the host and port. req is nil at
// connection time.
func (t *tally) note(c *compiled, req *request) {
	if c.http {
		if req == nil {
			t.httpRules = true
			if c.rule.Action == Deny {
				t.httpDeny = true
			} else {
				t.perRequest = earliest(t.perRequest, c)
			}
			return
		}
		if c.rule.Method != "" && !strings.EqualFold(c.rule.Method, req.method) {
			return
		}
		if c.path != nil {
			path := req.segments()
			if path.ambiguous {
				if c.rule.Action == Deny {
					t.ambiguousDeny = true
				}
				return
			}
			if !c.path.match(path.segs, c.rule.Action == Deny) {
				return
			}
		}
	}
	switch c.rule.Action {
	case Deny:
		t.deny = earliest(t.deny, c)
	case Bypass:
		t.bypass = earliest(t.bypass, c)
	case Allow:
		t.allow = earliest(t.allow, c)
	}
}

// collect notes every rule in force for sandbox that matches the host and
// port.
func (v *View) collect(sandbox string, h target, port int, req *request, t *tally) {
	consider := func(c *compiled) {
		if (c.host.Port == 0 || c.host.Port == port) && c.appliesTo(sandbox) {
			t.note(c, req)
		}
	}
	if h.isAddr {
		for _, c := range v.addrs {
			if c.host.MatchAddr(h.addr) {
				consider(c)
			}
		}
		return
	}
	for _, c := range v.exact[h.name] {
		consider(c)
	}
	// Wildcards are indexed by their domain: look up each proper suffix
	// of the name that starts after a dot.
	for i := 0; i < len(h.name); i++ {
		if h.name[i] != '.' {
			continue
		}
		for _, c := range v.wild[h.name[i+1:]] {
			if c.host.MatchName(h.name) {
				consider(c)
			}
		}
	}
}

// registeredAt returns the registered provider with an endpoint at exactly
// host and port, or nil.
func (v *View) registeredAt(host string, port int) *provider.Provider {
	for _, e := range v.registered[host] {
		if e.port == port {
			return e.provider
		}
	}
	return nil
}

// Connect decides a connection from sandbox ("" for a client with no
// sandbox, which only global rules apply to) to host and port: a CONNECT,
// or a connection the sandbox made to an address that the proxy mapped
// back to a name. host may be in any form hostname.Normalize accepts; an
// invalid one is refused. Connect does not allocate for a normalised name.
//
// An Allow with Deferred set needs Request for each request; an Allow
// without it may still be intercepted (to inject credentials and log), and
// Request would give the same answer for every request on it.
func (v *View) Connect(sandbox, host string, port int) Decision {
	h, ok := canonical(host)
	if !ok {
		return Decision{Action: Deny, Source: SourceDefault, why: whyBadHost, host: host, port: port}
	}
	var t tally
	v.collect(sandbox, h, port, nil, &t)
	d := Decision{host: h.name, port: port, presetName: v.preset, Deferred: t.httpRules}

	switch {
	case t.deny != nil:
		return v.decided(d, Deny, t.deny)
	case t.bypass != nil:
		if p := v.served[h.name]; p != nil {
			d = v.decided(d, Allow, t.bypass)
			d.Provider, d.BypassIgnored, d.why = p, true, whyBypassProvider
			return d
		}
		if t.httpDeny {
			d = v.decided(d, Allow, t.bypass)
			d.BypassIgnored, d.why = true, whyBypassHTTPRules
			return d
		}
		d = v.decided(d, Bypass, t.bypass)
		d.Deferred = false
		return d
	case t.allow != nil:
		return v.decided(d, Allow, t.allow)
	}
	if p := v.registeredAt(h.name, port); p != nil {
		d.Action, d.Source, d.Provider = Allow, SourceProvider, p
		return d
	}
	if v.preset == AllowAll {
		d.Action, d.Source = Allow, SourcePreset
		return d
	}
	if t.perRequest != nil {
		d = v.decided(d, Allow, t.perRequest)
		d.why = whyPerRequest
		return d
	}
	d.Action, d.Source = Deny, SourceDefault
	d.Deferred = false
	return d
}

// Request decides one request on an intercepted connection, or a plain
// HTTP request: method and the escaped path (without the query) to host
// and port. Rules with a method or path are judged here; a bypass rule
// counts as an allow, since the request is seen anyway.
//
// A path with dot segments or encoded slashes is refused when a deny rule
// with a path applies to its host and method, since an upstream could read
// it as a path the rule denies; it matches no allow rule with a path.
func (v *View) Request(sandbox, host string, port int, method, path string) Decision {
	h, ok := canonical(host)
	if !ok {
		return Decision{Action: Deny, Source: SourceDefault, why: whyBadHost, host: host, port: port,
			method: method, path: path}
	}
	req := request{method: method, rawPath: path}
	var t tally
	v.collect(sandbox, h, port, &req, &t)
	d := Decision{host: h.name, port: port, method: method, path: path, presetName: v.preset}

	switch {
	case t.deny != nil:
		return v.decided(d, Deny, t.deny)
	case t.ambiguousDeny:
		d.Action, d.Source, d.why = Deny, SourceDefault, whyAmbiguousPath
		return d
	case t.bypass != nil:
		return v.decided(d, Allow, t.bypass)
	case t.allow != nil:
		return v.decided(d, Allow, t.allow)
	}
	if p := v.registeredAt(h.name, port); p != nil {
		d.Action, d.Source, d.Provider = Allow, SourceProvider, p
		return d
	}
	if v.preset == AllowAll {
		d.Action, d.Source = Allow, SourcePreset
		return d
	}
	d.Action, d.Source = Deny, SourceDefault
	return d
}

// decided fills in a decision made by rule c.
func (v *View) decided(d Decision, action Action, c *compiled) Decision {
	d.Action, d.Source, d.Rule = action, c.source, c.rule
	if action == Deny {
		d.Deferred = false
	}
	return d
}

// ProviderSource gives the current providers; *provider.Registry is one.
type ProviderSource interface {
	Set() (*provider.Set, error)
}

// Engine keeps a View up to date with policy.json and the providers. A
// proxy holds one Engine and calls View for each new connection. An
// Engine is safe for concurrent use.
type Engine struct {
	store     *Store
	providers ProviderSource

	mu   sync.Mutex
	self []netip.AddrPort
	view *View
}

// NewEngine returns an engine over a policy store and a provider source;
// providers may be nil for none.
func NewEngine(store *Store, providers ProviderSource) *Engine {
	return &Engine{store: store, providers: providers}
}

// SetSelf records the proxy's own listening addresses, which CheckAddress
// always refuses. Pass concrete addresses: see ExpandListenAddr for a
// wildcard listener.
func (e *Engine) SetSelf(addrs ...netip.AddrPort) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.self = slices.Clone(addrs)
	e.view = nil
}

// View returns the current view. It re-reads policy.json and the
// providers only when they changed (a stat of each otherwise) and
// recompiles only then. An error (a policy file that cannot be parsed,
// say) means the proxy should refuse connections, with the error as the
// reason, until the file is fixed.
func (e *Engine) View() (*View, error) {
	p, err := e.store.Load()
	if err != nil {
		return nil, err
	}
	var set *provider.Set
	if e.providers != nil {
		if set, err = e.providers.Set(); err != nil {
			return nil, err
		}
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.view != nil && e.view.policy == p && e.view.providers == set {
		return e.view, nil
	}
	e.view = NewView(p, set, e.self)
	return e.view, nil
}

// String describes the decision for debugging: its action and reason.
func (d Decision) String() string {
	return fmt.Sprintf("%s: %s", d.Action, d.Reason())
}
