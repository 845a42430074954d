package policy

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cordon-dev/cordon/internal/state"
)

// FileName is the policy's file in cordon's config directory.
const FileName = "policy.json"

// fileVersion is the schema version of policy.json.
const fileVersion = 1

// ErrNoRule is returned, wrapped, when a rule to remove does not exist.
var ErrNoRule = errors.New("no such rule")

// fileData is policy.json as written.
type fileData struct {
	Version int    `json:"version"`
	Preset  Preset `json:"preset"`
	Rules   []Rule `json:"rules"`
}

// Policy is the contents of policy.json at one moment. It never changes
// after it is made; callers must not modify Rules.
type Policy struct {
	Preset Preset
	// Rules are the user's rules in the order they were added.
	Rules []Rule
	// Chosen is false when there is no policy.json yet: DefaultPreset
	// applies, and no preset has been chosen.
	Chosen bool

	compiled []*compiled
}

// defaultPolicy is what applies before "cordon policy init".
var defaultPolicy = &Policy{Preset: DefaultPreset}

// decodeFile reads policy.json: versioned, strict about unknown fields,
// every rule checked and put in canonical form. name is used in errors.
func decodeFile(name string, data []byte) (*Policy, error) {
	var f fileData
	if err := state.DecodeVersioned(name, data, fileVersion, &f); err != nil {
		return nil, err
	}
	if f.Preset == "" {
		return nil, fmt.Errorf("%s: no \"preset\"; use allow-all, balanced or deny-all", name)
	}
	if _, err := ParsePreset(string(f.Preset)); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	rules, err := checkRules(f.Rules)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	p := &Policy{Preset: f.Preset, Chosen: true, Rules: rules}
	p.compile()
	return p, nil
}

// checkRules checks rules as read from a file and returns them in
// canonical form.
func checkRules(rules []Rule) ([]Rule, error) {
	out := make([]Rule, 0, len(rules))
	seen := make(map[string]bool, len(rules))
	for i, r := range rules {
		if err := checkID(r.ID); err != nil {
			return nil, fmt.Errorf("rule %d: %v", i+1, err)
		}
		if seen[r.ID] {
			return nil, fmt.Errorf("rule %d: ID %s is used twice", i+1, r.ID)
		}
		seen[r.ID] = true
		c, err := compile(r)
		if err != nil {
			return nil, fmt.Errorf("rule %s: %v", r.ID, err)
		}
		out = append(out, *c.rule)
	}
	return out, nil
}

// NewPolicy makes a policy from a preset and rules without a file, as a
// proxy with rules from elsewhere or a test would. Each rule is checked as
// if read from policy.json.
func NewPolicy(preset Preset, rules []Rule) (*Policy, error) {
	if _, err := ParsePreset(string(preset)); err != nil {
		return nil, err
	}
	checked, err := checkRules(rules)
	if err != nil {
		return nil, err
	}
	p := &Policy{Preset: preset, Chosen: true, Rules: checked}
	p.compile()
	return p, nil
}

// compile fills p.compiled from p.Rules, which have been checked.
func (p *Policy) compile() {
	p.compiled = p.compiledRules()
}

// compiledRules returns the compiled rules, compiling them afresh for a
// policy that was not made by this package's constructors.
func (p *Policy) compiledRules() []*compiled {
	if p.compiled != nil || len(p.Rules) == 0 {
		return p.compiled
	}
	out := make([]*compiled, 0, len(p.Rules))
	for i := range p.Rules {
		c, err := compile(p.Rules[i])
		if err != nil {
			panic("policy: a rule that was not checked does not compile: " + err.Error())
		}
		c.rule = &p.Rules[i]
		c.source = SourceRule
		out = append(out, c)
	}
	return out
}

// encode renders the file.
func (p *Policy) encode() ([]byte, error) {
	rules := p.Rules
	if rules == nil {
		rules = []Rule{}
	}
	return state.EncodeJSON(fileData{Version: fileVersion, Preset: p.Preset, Rules: rules})
}

// checkID accepts the IDs cordon makes (8 hex digits) and, for hand
// edits, any short lower-case alphanumeric word.
func checkID(id string) error {
	if id == "" {
		return errors.New("no \"id\"")
	}
	if len(id) > 32 {
		return fmt.Errorf("ID %q is longer than 32 characters", id)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' && i > 0) {
			return fmt.Errorf("ID %q: use lower-case letters, digits and '-'", id)
		}
	}
	return nil
}

// newID returns an ID not in use in rules.
func newID(rules []Rule) (string, error) {
	for {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("making a rule ID: %w", err)
		}
		id := hex.EncodeToString(b[:])
		if !slices.ContainsFunc(rules, func(r Rule) bool { return r.ID == id }) {
			return id, nil
		}
	}
}

// Store is policy.json in cordon's config directory. Every change is made
// under the file's lock, so concurrent changes from several processes are
// applied one after the other and none is lost. A Store is safe for
// concurrent use.
type Store struct {
	path string

	mu      sync.Mutex
	current *Policy
	stamp   state.Stamp
	poll    state.Poll // skips the stat while no cordon process wrote
}

// OpenStore returns the policy kept in configDir. It reads nothing yet.
func OpenStore(configDir string) *Store {
	return &Store{path: filepath.Join(configDir, FileName), poll: state.NewPoll(configDir)}
}

// Path returns the policy file's path.
func (s *Store) Path() string { return s.path }

// Load returns the current policy, re-reading the file when it changed
// since the last call. When nothing changed it costs a memory load:
// cordon's writers bump a shared counter (see state.Changes), so a rule
// added by "cordon policy allow" applies to the very next connection, and
// a stat once a second catches hand edits. Without a file it returns the
// default: DefaultPreset and no rules, with Chosen false. A file that
// cannot be read or parsed is an error, never an empty policy.
func (s *Store) Load() (*Policy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	due, gen := s.poll.Due(now)
	if s.current != nil && !due {
		return s.current, nil
	}
	stamp, err := state.StampOf(s.path)
	if err != nil {
		return nil, fmt.Errorf("reading the policy: %w", err)
	}
	if s.current != nil && stamp == s.stamp {
		s.poll.Seen(gen, now)
		return s.current, nil
	}
	p := defaultPolicy
	if stamp.Exists {
		data, err := os.ReadFile(s.path)
		if errors.Is(err, fs.ErrNotExist) {
			// Removed between the stat and the read; the next call sees it.
			return defaultPolicy, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the policy: %w", err)
		}
		if p, err = decodeFile(s.path, data); err != nil {
			return nil, err
		}
	}
	s.current, s.stamp = p, stamp
	s.poll.Seen(gen, now)
	return p, nil
}

// update applies change to the policy under the file's lock and writes the
// result. created reports that there was no file before, so the change
// started from DefaultPreset.
func (s *Store) update(change func(p *Policy) error) (created bool, err error) {
	err = state.Update(s.path, 0o600, func(old []byte) ([]byte, error) {
		p := &Policy{Preset: DefaultPreset, Chosen: true}
		created = old == nil
		if !created {
			decoded, err := decodeFile(s.path, old)
			if err != nil {
				return nil, err
			}
			p = decoded
			p.Rules = slices.Clone(p.Rules)
		}
		if err := change(p); err != nil {
			return nil, err
		}
		return p.encode()
	})

	// This process sees its own change at once, even within the file
	// system's timestamp resolution.
	s.mu.Lock()
	s.current = nil
	s.mu.Unlock()
	return created, err
}

// InitResult says what Init changed.
type InitResult struct {
	// Previous is the preset before, and Existed whether there was a
	// policy file at all.
	Previous Preset
	Existed  bool
	// Kept and Removed count the user rules kept and removed.
	Kept, Removed int
}

// Init sets the preset. User rules are kept unless reset is true.
func (s *Store) Init(preset Preset, reset bool) (InitResult, error) {
	if _, err := ParsePreset(string(preset)); err != nil {
		return InitResult{}, err
	}
	var res InitResult
	created, err := s.update(func(p *Policy) error {
		res.Previous = p.Preset
		if reset {
			res.Removed = len(p.Rules)
			p.Rules = nil
		}
		res.Kept = len(p.Rules)
		p.Preset = preset
		return nil
	})
	res.Existed = !created
	return res, err
}

// AddResult says what Add changed.
type AddResult struct {
	// Created is set when there was no policy file: it now exists with
	// DefaultPreset, which the caller should tell the user about.
	Created bool
	// Added are the new rules with their IDs; Existing are rules that
	// were asked for but already present, as stored.
	Added, Existing []Rule
}

// Add stores rules, giving each an ID and a creation time. A rule equal
// to one already stored (same action, sandbox, host, method and path) is
// not added twice.
func (s *Store) Add(rules ...Rule) (AddResult, error) {
	checked := make([]Rule, 0, len(rules))
	for _, r := range rules {
		c, err := compile(r)
		if err != nil {
			return AddResult{}, err
		}
		checked = append(checked, *c.rule)
	}

	var res AddResult
	now := time.Now().UTC().Truncate(time.Second)
	created, err := s.update(func(p *Policy) error {
		res = AddResult{}
		for _, r := range checked {
			i := slices.IndexFunc(p.Rules, func(o Rule) bool { return o.sameTarget(&r) })
			if i >= 0 {
				res.Existing = append(res.Existing, p.Rules[i])
				continue
			}
			id, err := newID(p.Rules)
			if err != nil {
				return err
			}
			r.ID, r.Created = id, now
			p.Rules = append(p.Rules, r)
			res.Added = append(res.Added, r)
		}
		return nil
	})
	if err != nil {
		return AddResult{}, err
	}
	res.Created = created
	return res, nil
}

// RemoveIDs removes the rules with the given IDs. If any ID is unknown,
// nothing is removed and the error wraps ErrNoRule.
func (s *Store) RemoveIDs(ids ...string) ([]Rule, error) {
	if err := s.mustExist(); err != nil {
		return nil, err
	}
	var removed []Rule
	_, err := s.update(func(p *Policy) error {
		removed = nil
		for _, id := range ids {
			i := slices.IndexFunc(p.Rules, func(r Rule) bool { return r.ID == id })
			if i < 0 {
				return fmt.Errorf("%w with ID %q", ErrNoRule, id)
			}
			removed = append(removed, p.Rules[i])
			p.Rules = slices.Delete(p.Rules, i, i+1)
		}
		return nil
	})
	return removed, err
}

// RemoveHosts removes every rule for each of hosts in one scope: the
// global rules when sandbox is "", otherwise that sandbox's. If a host has
// no rule in that scope, nothing is removed and the error, wrapping
// ErrNoRule, says where rules for it do exist.
func (s *Store) RemoveHosts(sandbox string, hosts []HostPattern) ([]Rule, error) {
	if err := s.mustExist(); err != nil {
		return nil, err
	}
	var removed []Rule
	_, err := s.update(func(p *Policy) error {
		removed = nil
		for _, h := range hosts {
			host := h.String()
			n := len(removed)
			p.Rules = slices.DeleteFunc(p.Rules, func(r Rule) bool {
				if r.Host == host && r.Sandbox == sandbox {
					removed = append(removed, r)
					return true
				}
				return false
			})
			if len(removed) == n {
				return noRuleForHost(p, sandbox, host)
			}
		}
		return nil
	})
	return removed, err
}

// mustExist refuses a removal when there is no policy file, which would
// otherwise create one just to report that nothing matched.
func (s *Store) mustExist() error {
	if _, err := os.Stat(s.path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: there are no rules yet", ErrNoRule)
	} else if err != nil {
		return fmt.Errorf("reading the policy: %w", err)
	}
	return nil
}

// noRuleForHost explains a failed removal by host.
func noRuleForHost(p *Policy, sandbox, host string) error {
	scope := "global"
	if sandbox != "" {
		scope = "sandbox " + sandbox
	}
	var elsewhere []string
	for _, r := range p.Rules {
		if r.Host != host || r.Sandbox == sandbox {
			continue
		}
		where := "global"
		if r.Sandbox != "" {
			where = "sandbox " + r.Sandbox
		}
		if !slices.Contains(elsewhere, where) {
			elsewhere = append(elsewhere, where)
		}
	}
	inPreset := slices.ContainsFunc(presetRules[p.Preset], func(c *compiled) bool {
		return c.rule.Host == host
	})
	switch {
	case len(elsewhere) > 0:
		return fmt.Errorf("%w for %s among the %s rules; there are rules for it in: %s",
			ErrNoRule, host, scope, strings.Join(elsewhere, ", "))
	case inPreset:
		return fmt.Errorf("%w for %s: it is allowed by the %s preset, which rm cannot change; deny it instead",
			ErrNoRule, host, p.Preset)
	}
	return fmt.Errorf("%w for %s among the %s rules", ErrNoRule, host, scope)
}

// RemoveSandbox removes every rule scoped to one sandbox, for "cordon rm".
// A missing policy file has no such rules and is left missing.
func (s *Store) RemoveSandbox(sandbox string) ([]Rule, error) {
	if sandbox == "" {
		return nil, errors.New("removing sandbox rules: no sandbox named")
	}
	if _, err := os.Stat(s.path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var removed []Rule
	_, err := s.update(func(p *Policy) error {
		removed = nil
		p.Rules = slices.DeleteFunc(p.Rules, func(r Rule) bool {
			if r.Sandbox == sandbox {
				removed = append(removed, r)
				return true
			}
			return false
		})
		return nil
	})
	return removed, err
}
