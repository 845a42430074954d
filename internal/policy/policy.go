// Package policy decides where a sandbox may connect: the user's rules and
// a preset, kept in policy.json, evaluated with the registered providers
// into a decision with its reason; the checks on resolved addresses that
// keep a sandbox away from loopback, private ranges and cloud metadata;
// and the diagnosis behind "cordon policy check".
//
// Evaluation in brief: a matching deny rule wins; then a bypass rule; then
// an allow rule, a registered provider's host, or the preset; with none of
// those the connection is refused. Rules scoped to a sandbox apply to that
// sandbox only. Rules with a method or path are judged per request, on
// intercepted connections.
package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cordon-dev/cordon/internal/names"
)

// Action is what a rule does with the connections it matches.
type Action string

const (
	// Allow lets the connection through; the proxy intercepts it, so
	// credentials can be injected and requests logged.
	Allow Action = "allow"
	// Deny refuses it. A matching deny wins over every other rule.
	Deny Action = "deny"
	// Bypass lets it through as a plain tunnel, without interception or
	// injection, for endpoints that pin certificates or want client
	// certificates.
	Bypass Action = "bypass"
)

// ParseAction checks an action name.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case Allow, Deny, Bypass:
		return a, nil
	}
	return "", fmt.Errorf("unknown action %q: use allow, deny or bypass", s)
}

// Source says what decided: a user rule, the preset, a registered
// provider, or nothing (the default refusal).
type Source string

const (
	// SourceRule: one of the user's rules.
	SourceRule Source = "rule"
	// SourcePreset: an entry of the preset, or the allow-all preset.
	SourcePreset Source = "preset"
	// SourceProvider: the host and port of a registered provider's base
	// URL, which registering it allows.
	SourceProvider Source = "provider"
	// SourceDefault: nothing allowed it (or the host was invalid), so it
	// is refused.
	SourceDefault Source = "default"
)

// Preset is the base that user rules add to.
type Preset string

const (
	// AllowAll allows every destination that no rule denies. The address
	// checks still apply.
	AllowAll Preset = "allow-all"
	// Balanced allows the built-in providers, the common package
	// registries, code hosts and container registries (see PresetRules).
	Balanced Preset = "balanced"
	// DenyAll allows nothing but registered providers and allow rules.
	DenyAll Preset = "deny-all"
)

// DefaultPreset applies until the user runs "cordon policy init".
const DefaultPreset = Balanced

// ParsePreset checks a preset name.
func ParsePreset(s string) (Preset, error) {
	switch p := Preset(s); p {
	case AllowAll, Balanced, DenyAll:
		return p, nil
	}
	return "", fmt.Errorf("unknown preset %q: use allow-all, balanced or deny-all", s)
}

// Rule is one user rule, or one entry of a preset (then ID and Created
// are empty).
type Rule struct {
	// ID identifies the rule for "policy rm --id": 8 hex digits, stable
	// for the rule's life.
	ID     string `json:"id"`
	Action Action `json:"action"`
	// Host is the host pattern in its canonical form (see HostPattern).
	Host string `json:"host"`
	// Method limits the rule to one HTTP method, in upper case; "" is any.
	Method string `json:"method,omitempty"`
	// Path limits the rule to request paths matching the pattern ('*' one
	// segment, '**' any depth); "" is any path.
	Path string `json:"path,omitempty"`
	// Sandbox limits the rule to one sandbox; "" means every sandbox.
	Sandbox string    `json:"sandbox,omitempty"`
	Created time.Time `json:"created,omitzero"`
}

// NewRule builds a rule from its parts, checking and normalising each.
// The ID and creation time are set when the rule is stored.
func NewRule(action Action, host HostPattern, sandbox, method, path string) (Rule, error) {
	r := Rule{Action: action, Host: host.String(), Sandbox: sandbox, Method: method, Path: path}
	c, err := compile(r)
	if err != nil {
		return Rule{}, err
	}
	return *c.rule, nil
}

// IsHTTP reports whether the rule has a method or a path, which makes it
// judged per request rather than per connection.
func (r *Rule) IsHTTP() bool { return r.Method != "" || r.Path != "" }

// String describes the rule the way messages quote it: "deny
// **.example.com", "allow api.example.com GET /v1/**".
func (r *Rule) String() string {
	var b strings.Builder
	b.WriteString(string(r.Action))
	b.WriteByte(' ')
	b.WriteString(r.Host)
	if r.Method != "" {
		b.WriteByte(' ')
		b.WriteString(r.Method)
	}
	if r.Path != "" {
		b.WriteByte(' ')
		b.WriteString(r.Path)
	}
	if r.Sandbox != "" {
		b.WriteString(" for sandbox ")
		b.WriteString(r.Sandbox)
	}
	return b.String()
}

// sameTarget reports whether two rules have the same action, scope, host,
// method and path, so that adding one when the other exists changes
// nothing.
func (r *Rule) sameTarget(o *Rule) bool {
	return r.Action == o.Action && r.Sandbox == o.Sandbox && r.Host == o.Host &&
		r.Method == o.Method && r.Path == o.Path
}

// compiled is a rule parsed for evaluation.
type compiled struct {
	rule   *Rule
	source Source
	order  int // position among the view's rules: user rules first
	host   HostPattern
	path   *pathPattern // nil: any path
	http   bool
	note   string // for preset rules: what the destination is for
}

// compile checks a rule and parses its patterns. The returned rule is a
// copy with every field in canonical form.
func compile(r Rule) (*compiled, error) {
	if _, err := ParseAction(string(r.Action)); err != nil {
		return nil, err
	}
	host, err := ParseHostPattern(r.Host)
	if err != nil {
		return nil, err
	}
	r.Host = host.String()
	if r.Sandbox != "" {
		if err := names.Check("sandbox", r.Sandbox); err != nil {
			return nil, err
		}
	}
	c := &compiled{host: host}
	if r.Method != "" {
		if r.Method, err = parseMethod(r.Method); err != nil {
			return nil, err
		}
	}
	if r.Path != "" {
		p, err := parsePathPattern(r.Path)
		if err != nil {
			return nil, err
		}
		r.Path = p.raw
		c.path = &p
	}
	c.http = r.IsHTTP()
	if c.http && r.Action == Bypass {
		return nil, errors.New("a bypass rule takes no method or path: a bypassed connection is not intercepted, so its requests are never seen")
	}
	c.rule = &r
	return c, nil
}

// appliesTo reports whether the rule is in force for sandbox.
func (c *compiled) appliesTo(sandbox string) bool {
	return c.rule.Sandbox == "" || c.rule.Sandbox == sandbox
}
