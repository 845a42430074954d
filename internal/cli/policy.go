package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cordon-dev/cordon/internal/names"
	"github.com/cordon-dev/cordon/internal/policy"
	"github.com/cordon-dev/cordon/internal/provider"
)

const policyHelp = `The network policy decides where sandboxes may connect: a preset plus your
rules, kept in policy.json in cordon's config directory. Running proxies
apply a change from their next connection on.

Presets (cordon policy init):
  balanced   the built-in providers, the package registries (npm, PyPI, Go,
             crates.io, RubyGems, Maven Central, Debian, Ubuntu, Alpine),
             code hosts (GitHub, GitLab, Bitbucket) and container registries
             (Docker Hub, ghcr.io). The default until you choose.
  deny-all   nothing but registered providers and your allow rules
  allow-all  everything that no rule denies

How a connection is decided:
  1. a matching deny rule refuses it, whatever else matches;
  2. otherwise a bypass rule tunnels it without interception (a host
     where a provider's credential is injected is intercepted anyway);
  3. otherwise an allow rule, a registered provider's host (at its base
     URL's port) or the preset allows it;
  4. otherwise it is refused.
Rules given --sandbox apply to that sandbox only; the others to every
sandbox. Rules with --method or --path are judged per request.

HOSTS is a comma-separated list of:
  example.com        that host, any port
  example.com:8443   that host, one port
  *.example.com      exactly one label below: api.example.com, but not
                     a.b.example.com nor example.com itself
  **.example.com     any depth below: api.example.com, a.b.example.com,
                     but not example.com itself (add both to cover both)
  10.0.0.5:8000      an address, with an optional port ([2001:db8::5]:8000)
  10.0.0.0/8         an IPv4 or IPv6 range
Case, a trailing dot and international names do not matter.

Loopback, private ranges, link-local and cloud metadata (169.254.169.254)
stay unreachable even for allowed names, unless an allow rule names that
exact host, address or range, or a registered provider's base URL does;
wildcards and presets never open them.`

func newPolicyCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Choose where sandboxes may connect",
		Long:  policyHelp,
		Args:  noArgs,
	}
	cmd.AddCommand(
		newPolicyInitCmd(e),
		newPolicyRuleCmd(e, policy.Allow),
		newPolicyRuleCmd(e, policy.Deny),
		newPolicyBypassCmd(e),
		newPolicyRmCmd(e),
		newPolicyLsCmd(e),
		newPolicyCheckCmd(e),
		newPolicyLogCmd(e),
	)
	return cmd
}

// policyStore opens policy.json in cordon's config directory.
func (e *env) policyStore() (*policy.Store, error) {
	dirs, err := e.state()
	if err != nil {
		return nil, err
	}
	return policy.OpenStore(dirs.Config), nil
}

// policyView loads the policy and the providers and compiles them.
func (e *env) policyView() (*policy.View, error) {
	store, err := e.policyStore()
	if err != nil {
		return nil, err
	}
	p, err := store.Load()
	if err != nil {
		return nil, err
	}
	reg, err := e.registry()
	if err != nil {
		return nil, err
	}
	set, err := reg.Set()
	if err != nil {
		return nil, err
	}
	return policy.NewView(p, set, nil), nil
}

// noteDefaultPreset says, once, that a policy file was just created with
// the default preset.
func (e *env) noteDefaultPreset() {
	e.infof("no policy was chosen yet: using the %s preset (change it with \"cordon policy init allow-all|balanced|deny-all\")",
		policy.DefaultPreset)
}

// sandboxFlag reads --sandbox: "" when not given, an error for an invalid
// name.
func sandboxFlag(cmd *cobra.Command, value string) (string, error) {
	if !cmd.Flags().Changed("sandbox") {
		return "", nil
	}
	if err := names.Check("sandbox", value); err != nil {
		return "", &usageError{err: err}
	}
	return value, nil
}

// parseHostArgs reads HOSTS arguments, each a comma-separated list.
func parseHostArgs(args []string) ([]policy.HostPattern, error) {
	var out []policy.HostPattern
	for _, a := range args {
		list, err := policy.ParseHostList(a)
		if err != nil {
			return nil, &usageError{err: err}
		}
		out = append(out, list...)
	}
	return out, nil
}

func newPolicyInitCmd(e *env) *cobra.Command {
	var reset bool
	cmd := &cobra.Command{
		Use:   "init allow-all|balanced|deny-all",
		Short: "Choose the preset your rules add to",
		Long: `Choose the preset your rules add to. Your rules are kept; --reset removes
them. "cordon policy ls" shows what a preset allows.`,
		Args:      exactArgs(1, "a preset: allow-all, balanced or deny-all"),
		ValidArgs: []string{string(policy.AllowAll), string(policy.Balanced), string(policy.DenyAll)},
		RunE: func(cmd *cobra.Command, args []string) error {
			preset, err := policy.ParsePreset(args[0])
			if err != nil {
				return &usageError{err: err}
			}
			store, err := e.policyStore()
			if err != nil {
				return err
			}
			res, err := store.Init(preset, reset)
			if err != nil {
				return err
			}
			msg := fmt.Sprintf("policy: %s preset", preset)
			if res.Existed && res.Previous != preset {
				msg += fmt.Sprintf(" (was %s)", res.Previous)
			}
			switch {
			case res.Removed > 0:
				msg += fmt.Sprintf("; %s removed", plural(res.Removed, "rule"))
			case res.Kept > 0:
				msg += fmt.Sprintf("; %s kept", plural(res.Kept, "rule"))
			}
			e.infof("%s", msg)
			return nil
		},
	}
	cmd.Flags().BoolVar(&reset, "reset", false, "remove every rule as well")
	return cmd
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// ruleCmdText is the help of "policy allow" or "policy deny".
type ruleCmdText struct {
	short, long, example string
}

var ruleCmdTexts = map[policy.Action]ruleCmdText{
	policy.Allow: {
		short: "Allow sandboxes to reach hosts",
		long: `Allow sandboxes to reach HOSTS, a comma-separated list of host patterns
(see "cordon policy --help"). A deny rule that matches still wins.

With --method or --path the rule is judged per request on the intercepted
connection: other requests to the host are refused unless something else
allows them. In --path, '*' matches one segment and '**' any number.`,
		example: `  cordon policy allow network example.com,*.cdn.example.com
  cordon policy allow network db.internal.example:5432 --sandbox review-bot
  cordon policy allow network api.example.com --method GET --path '/v1/**'`,
	},
	policy.Deny: {
		short: "Refuse hosts, whatever else allows them",
		long: `Refuse connections to HOSTS, a comma-separated list of host patterns (see
"cordon policy --help"). A deny rule wins over every allow rule, preset and
provider. A denied address or range also refuses names that resolve into it.

With --method or --path only matching requests are refused; the rest of the
host stays as other rules leave it. In --path, '*' matches one segment and
'**' any number; letter case is ignored, since some servers ignore it.`,
		example: `  cordon policy deny network '**.tracking.example'
  cordon policy deny network api.example.com --method DELETE
  cordon policy deny network 10.0.0.0/8 --sandbox untrusted`,
	},
}

// newPolicyRuleCmd builds "policy allow" or "policy deny", whose one
// subcommand, "network", takes the hosts.
func newPolicyRuleCmd(e *env, action policy.Action) *cobra.Command {
	verb, text := string(action), ruleCmdTexts[action]
	cmd := &cobra.Command{
		Use:   verb + " network HOSTS",
		Short: text.short,
		Long:  text.long,
		// Anything but "network" lands here; say what was meant.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("say what to %s: cordon policy %s network HOSTS", verb, verb)
			}
			return withHint(usagef("unknown kind %q for policy %s", args[0], verb),
				fmt.Sprintf("write: cordon policy %s network %s", verb, args[0]))
		},
		RunE: func(cmd *cobra.Command, args []string) error { return nil },
	}

	var sandbox, method, path string
	network := &cobra.Command{
		Use:     "network HOSTS [--sandbox NAME] [--method M] [--path P]",
		Short:   text.short,
		Long:    text.long,
		Example: text.example,
		Args:    minArgs(1, "HOSTS, such as example.com or *.example.com"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.addRules(cmd, action, args, sandbox, method, path)
		},
	}
	f := network.Flags()
	f.StringVar(&sandbox, "sandbox", "", "apply to this sandbox only (default: every sandbox)")
	f.StringVar(&method, "method", "", "only requests with this HTTP method")
	f.StringVar(&path, "path", "", "only requests whose path matches ('*' one segment, '**' any depth)")
	cmd.AddCommand(network)
	return cmd
}

func newPolicyBypassCmd(e *env) *cobra.Command {
	var sandbox string
	cmd := &cobra.Command{
		Use:   "bypass HOSTS [--sandbox NAME]",
		Short: "Tunnel hosts without interception",
		Long: `Let sandboxes reach HOSTS through a plain tunnel: no interception, so no
credential injection and no per-request log. Use it for endpoints that pin
their certificate or want a client certificate. A deny rule still wins.

A host where a provider's credential is injected cannot be bypassed: the
tunnel would silently lose the credential.`,
		Example: `  cordon policy bypass pinned.example.com
  cordon policy bypass mtls.internal.example:8443 --sandbox deploy`,
		Args: minArgs(1, "HOSTS, such as pinned.example.com"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.addRules(cmd, policy.Bypass, args, sandbox, "", "")
		},
	}
	cmd.Flags().StringVar(&sandbox, "sandbox", "", "apply to this sandbox only (default: every sandbox)")
	return cmd
}

// addRules is allow, deny and bypass: every argument is checked before
// anything is written.
func (e *env) addRules(cmd *cobra.Command, action policy.Action, args []string,
	sandbox, method, path string) error {
	sandbox, err := sandboxFlag(cmd, sandbox)
	if err != nil {
		return err
	}
	if cmd.Flags().Changed("method") && method == "" {
		return usagef("--method is empty")
	}
	if cmd.Flags().Changed("path") && path == "" {
		return usagef("--path is empty")
	}
	patterns, err := parseHostArgs(args)
	if err != nil {
		return err
	}
	var rules []policy.Rule
	for _, p := range patterns {
		r, err := policy.NewRule(action, p, sandbox, method, path)
		if err != nil {
			return &usageError{err: err}
		}
		rules = append(rules, r)
	}

	if action == policy.Bypass {
		reg, err := e.registry()
		if err != nil {
			return err
		}
		set, err := reg.Set()
		if err != nil {
			return err
		}
		for _, p := range patterns {
			if err := policy.CheckBypass(p, set); err != nil {
				return withHint(&usageError{err: err},
					"bypass is for hosts without credentials (pinned or mutual-TLS endpoints); "+
						"to reach this one use: cordon policy allow network "+p.String())
			}
		}
	}

	store, err := e.policyStore()
	if err != nil {
		return err
	}
	res, err := store.Add(rules...)
	if err != nil {
		return err
	}
	if res.Created {
		e.noteDefaultPreset()
	}
	for _, r := range res.Added {
		e.infof("added rule %s: %s", r.ID, r.String())
	}
	for _, r := range res.Existing {
		e.infof("rule %s already says: %s", r.ID, r.String())
	}
	if action != policy.Deny {
		e.warnShadowed(store, res.Added)
	}
	return nil
}

// warnShadowed warns when a new allow or bypass rule can never take effect
// because a deny rule for the same host pattern, in a scope that covers
// it, matches every request it would.
func (e *env) warnShadowed(store *policy.Store, added []policy.Rule) {
	p, err := store.Load()
	if err != nil {
		return
	}
	for _, a := range added {
		for _, d := range p.Rules {
			if d.Action != policy.Deny || d.Host != a.Host || d.IsHTTP() ||
				d.Sandbox != "" && d.Sandbox != a.Sandbox {
				continue
			}
			e.warnf("rule %s (%s) still wins over rule %s; remove it with \"cordon policy rm --id %s\"",
				d.ID, d.String(), a.ID, d.ID)
			break
		}
	}
}

func newPolicyRmCmd(e *env) *cobra.Command {
	var ids []string
	var sandbox string
	cmd := &cobra.Command{
		Use:     "rm (--id ID | HOSTS) [--sandbox NAME]",
		Aliases: []string{"remove"},
		Short:   "Remove rules",
		Long: `Remove rules by ID (see "cordon policy ls"), or every rule for HOSTS in one
scope: the rules for every sandbox, or with --sandbox that sandbox's own.
HOSTS must be written as the rule has it (ls shows it). If anything named
has no rule, nothing is removed. Preset entries cannot be removed; deny the
host instead, or choose another preset.`,
		Example: `  cordon policy rm --id 3f9a12cd
  cordon policy rm example.com,*.example.com
  cordon policy rm db.internal.example:5432 --sandbox review-bot`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(ids) > 0 && len(args) > 0:
				return usagef("give --id or HOSTS, not both")
			case len(ids) == 0 && len(args) == 0:
				return usagef("say which rules to remove: --id ID or HOSTS")
			case len(ids) > 0 && cmd.Flags().Changed("sandbox"):
				return usagef("--sandbox goes with HOSTS; an ID names one rule already")
			}
			for _, id := range ids {
				if id == "" {
					return usagef("--id is empty")
				}
			}
			sandbox, err := sandboxFlag(cmd, sandbox)
			if err != nil {
				return err
			}
			var patterns []policy.HostPattern
			if len(args) > 0 {
				if patterns, err = parseHostArgs(args); err != nil {
					return err
				}
			}

			store, err := e.policyStore()
			if err != nil {
				return err
			}
			var removed []policy.Rule
			if len(ids) > 0 {
				removed, err = store.RemoveIDs(ids...)
			} else {
				removed, err = store.RemoveHosts(sandbox, patterns)
			}
			if errors.Is(err, policy.ErrNoRule) {
				return withHint(&usageError{err: err}, `"cordon policy ls" lists the rules and their IDs`)
			}
			if err != nil {
				return err
			}
			for _, r := range removed {
				e.infof("removed rule %s: %s", r.ID, r.String())
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&ids, "id", nil, "ID of a rule to remove (repeatable, or comma-separated)")
	cmd.Flags().StringVar(&sandbox, "sandbox", "", "remove that sandbox's rules for HOSTS (default: the rules for every sandbox)")
	return cmd
}

// ruleJSON is the stable JSON form of one row of "policy ls". Every field
// is always present; "" means any (method, path), every sandbox (sandbox)
// or not applicable.
type ruleJSON struct {
	ID       string    `json:"id"`
	Action   string    `json:"action"`
	Host     string    `json:"host"`
	Method   string    `json:"method"`
	Path     string    `json:"path"`
	Sandbox  string    `json:"sandbox"`
	Source   string    `json:"source"` // rule, provider or preset
	Provider string    `json:"provider"`
	Note     string    `json:"note"`
	Created  time.Time `json:"created,omitzero"`
}

type policyJSON struct {
	Preset       string     `json:"preset"`
	PresetChosen bool       `json:"preset_chosen"`
	Rules        []ruleJSON `json:"rules"`
}

func newPolicyLsCmd(e *env) *cobra.Command {
	var sandbox string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls [--sandbox NAME] [--json]",
		Aliases: []string{"list"},
		Short:   "List rules, the preset's entries and registered providers' hosts",
		Long: `List what the policy allows and refuses: your rules, then the registered
providers' hosts (allowed by registering them), then the preset's entries.
Anything not listed is refused, unless the preset is allow-all. With
--sandbox, only what applies to that sandbox: the rules for every sandbox
and its own.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sandbox, err := sandboxFlag(cmd, sandbox)
			if err != nil {
				return err
			}
			view, err := e.policyView()
			if err != nil {
				return err
			}
			p := view.Policy()
			rows := policyRows(p, view.Providers(), sandbox, cmd.Flags().Changed("sandbox"))
			if asJSON {
				return writeJSON(e.stdout, policyJSON{
					Preset: string(p.Preset), PresetChosen: p.Chosen, Rules: rows,
				})
			}

			if p.Chosen {
				e.infof("preset: %s", p.Preset)
			} else {
				e.infof("preset: %s (the default: no policy chosen yet; choose with \"cordon policy init\")", p.Preset)
			}
			t := newTable(e.stdout, "ID", "ACTION", "HOST", "METHOD", "PATH", "SANDBOX", "SOURCE", "NOTE")
			for _, r := range rows {
				scope := r.Sandbox
				if scope == "" {
					scope = "(all)"
				}
				source := r.Source
				switch r.Source {
				case "preset":
					source += ":" + string(p.Preset)
				case "provider":
					source += ":" + r.Provider
				}
				t.row(r.ID, r.Action, r.Host, r.Method, r.Path, scope, source, r.Note)
			}
			if err := t.flush(); err != nil {
				return err
			}
			if p.Preset != policy.AllowAll {
				e.infof("anything else is refused")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&sandbox, "sandbox", "", "show only what applies to this sandbox")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// policyRows lists the user's rules, the registered providers' hosts and
// the preset's entries. With filter set, only the rules that apply to
// sandbox are listed.
func policyRows(p *policy.Policy, set *provider.Set, sandbox string, filter bool) []ruleJSON {
	rows := []ruleJSON{}
	for _, r := range p.Rules {
		if filter && r.Sandbox != "" && r.Sandbox != sandbox {
			continue
		}
		rows = append(rows, ruleJSON{
			ID: r.ID, Action: string(r.Action), Host: r.Host, Method: r.Method, Path: r.Path,
			Sandbox: r.Sandbox, Source: string(policy.SourceRule), Created: r.Created,
		})
	}
	if set != nil {
		for _, prov := range set.All() {
			if prov.Builtin {
				continue
			}
			for _, ep := range prov.Endpoints {
				rows = append(rows, ruleJSON{
					Action: string(policy.Allow), Host: hostPort(ep), Source: string(policy.SourceProvider),
					Provider: prov.Name, Note: "base URL " + ep.String(),
				})
			}
		}
	}
	if p.Preset == policy.AllowAll {
		rows = append(rows, ruleJSON{Action: string(policy.Allow), Host: "*", Source: string(policy.SourcePreset),
			Note: "every host that no rule denies"})
	}
	for _, r := range policy.PresetRules(p.Preset) {
		rows = append(rows, ruleJSON{
			Action: string(r.Action), Host: r.Host, Method: r.Method, Path: r.Path,
			Source: string(policy.SourcePreset), Note: r.Note,
		})
	}
	return rows
}

// hostPort writes an endpoint's host and port in host pattern form.
func hostPort(ep provider.Endpoint) string {
	host := ep.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(ep.Port)
}

// checkJSON is the stable JSON form of "policy check". The URL never
// carries the query, which may hold credentials.
type checkJSON struct {
	Method      string        `json:"method"`
	URL         string        `json:"url"`
	Sandbox     string        `json:"sandbox"`
	Allowed     bool          `json:"allowed"`
	Action      string        `json:"action"`
	Source      string        `json:"source"`
	Rule        *checkRuleRef `json:"rule"`
	Reason      string        `json:"reason"`
	Intercepted bool          `json:"intercepted"`
	Bypassed    bool          `json:"bypassed"`
	// BlockedAddress names the blocked range of a host given as an
	// address; "" otherwise.
	BlockedAddress string `json:"blocked_address"`

	Provider     string `json:"provider"`
	BaseURL      string `json:"base_url"`
	Credential   string `json:"credential"`
	SecretScope  string `json:"secret_scope"`
	Injected     bool   `json:"injected"`
	NoCredential string `json:"no_credential"`
	Why          string `json:"no_credential_reason"`
	NearProvider string `json:"near_provider"`
}

type checkRuleRef struct {
	ID      string `json:"id"`
	Action  string `json:"action"`
	Host    string `json:"host"`
	Method  string `json:"method"`
	Path    string `json:"path"`
	Sandbox string `json:"sandbox"`
}

func newPolicyCheckCmd(e *env) *cobra.Command {
	var sandbox, method string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check [--sandbox NAME] [--method M] URL [--json]",
		Short: "Say what the proxy would do with a request, without sending it",
		Long: `Say what the proxy would do with a request to URL, without sending anything:
allowed or refused and by which rule, intercepted or bypassed, and which
provider's credential would be injected in which form, or exactly why none
would be (no provider for the host, path outside the base URL, plain HTTP,
another port, no secret in this sandbox's scope or the global one, host
bypassed). Names are not resolved; a host given as an address is checked
against the blocked ranges.

A request that gets 401 through cordon usually shows its cause here.`,
		Example: `  cordon policy check https://api.openai.com/v1/models
  cordon policy check --sandbox review-bot --method POST https://llm.internal.example.com/v1/chat/completions`,
		Args: exactArgs(1, "a URL, such as https://api.openai.com/v1/models"),
		RunE: func(cmd *cobra.Command, args []string) error {
			sandbox, err := sandboxFlag(cmd, sandbox)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("method") && method == "" {
				return usagef("--method is empty")
			}
			view, err := e.policyView()
			if err != nil {
				return err
			}
			// Reject a malformed URL before touching the secret store.
			if _, err := view.Diagnose(sandbox, method, args[0], nil); err != nil {
				return &usageError{err: err}
			}
			store, err := e.secrets()
			if err != nil {
				return err
			}
			snap, err := store.Snapshot()
			if err != nil {
				return err
			}
			d, err := view.Diagnose(sandbox, method, args[0], snap)
			if err != nil {
				return &usageError{err: err}
			}
			out := toCheckJSON(d)
			if asJSON {
				return writeJSON(e.stdout, out)
			}
			if !view.Policy().Chosen {
				e.infof("no policy chosen yet: the %s preset applies", view.Policy().Preset)
			}
			e.printCheck(out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sandbox, "sandbox", "", "the sandbox sending the request (default: none, only rules for every sandbox)")
	f.StringVar(&method, "method", "GET", "the request's HTTP method")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func toCheckJSON(d *policy.Diagnosis) checkJSON {
	out := checkJSON{
		Method:       d.Method,
		URL:          displayURL(d),
		Sandbox:      d.Sandbox,
		Allowed:      d.Allowed,
		Action:       string(d.Decision.Action),
		Source:       string(d.Decision.Source),
		Reason:       d.Decision.Reason(),
		Intercepted:  d.Intercepted && d.Allowed,
		Bypassed:     d.Bypassed,
		SecretScope:  d.SecretScope,
		Injected:     d.Injected(),
		NoCredential: string(d.NoCredential),
		Why:          d.NoCredentialReason(),
	}
	if !d.Allowed {
		out.Action = string(policy.Deny)
	}
	if r := d.Decision.Rule; r != nil {
		out.Rule = &checkRuleRef{ID: r.ID, Action: string(r.Action), Host: r.Host, Method: r.Method,
			Path: r.Path, Sandbox: r.Sandbox}
	}
	if d.AddressError != nil {
		out.BlockedAddress = d.AddressError.Range
		out.Reason = d.AddressError.Error()
	}
	if d.Provider != nil {
		out.Provider = d.Provider.Name
		out.BaseURL = d.Endpoint.String()
		out.Credential = d.Provider.Auth.String()
	}
	if d.Near != nil {
		out.NearProvider = d.Near.Name
	}
	return out
}

// displayURL rebuilds the checked URL without its query.
func displayURL(d *policy.Diagnosis) string {
	return provider.Endpoint{Scheme: d.Scheme, Host: d.Host, Port: d.Port, Path: d.Path}.String()
}

func (e *env) printCheck(c checkJSON) {
	sandbox := c.Sandbox
	if sandbox == "" {
		sandbox = "(none: only the rules for every sandbox apply)"
	}
	verdict := "refused"
	if c.Allowed {
		verdict = "allowed"
	}
	connection := "-"
	switch {
	case c.Bypassed:
		connection = "bypassed: tunnelled without interception"
	case c.Intercepted:
		connection = "intercepted"
	}
	credential := "none: " + c.Why
	if c.Injected {
		credential = fmt.Sprintf("%s, %s (%s secret)", c.Provider, c.Credential, c.SecretScope)
	}
	w := e.stdout
	fmt.Fprintf(w, "request:     %s %s\n", c.Method, oneLine(c.URL))
	fmt.Fprintf(w, "sandbox:     %s\n", sandbox)
	fmt.Fprintf(w, "decision:    %s: %s\n", verdict, oneLine(c.Reason))
	fmt.Fprintf(w, "connection:  %s\n", connection)
	fmt.Fprintf(w, "credential:  %s\n", oneLine(credential))
}
