package cli

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cordon-dev/cordon/internal/provider"
)

func newProviderCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "provider",
		Short: "Manage the APIs whose credentials cordon injects",
		Long: `A provider is an HTTP API that cordon holds a credential for. The public
APIs are built in (run "cordon provider ls"); register any other endpoint by
its base URL: a vLLM, Ollama, LiteLLM or llama.cpp server, a private gateway.
Requests from a sandbox to that base URL get the stored credential added on
the host.`,
		Args: noArgs,
	}
	cmd.AddCommand(newProviderAddCmd(e), newProviderLsCmd(e), newProviderShowCmd(e), newProviderRmCmd(e))
	return cmd
}

// registry opens the provider registry in cordon's config directory.
func (e *env) registry() (*provider.Registry, error) {
	dirs, err := e.state()
	if err != nil {
		return nil, err
	}
	return provider.OpenRegistry(dirs.Config), nil
}

func newProviderAddCmd(e *env) *cobra.Command {
	var spec provider.Spec
	var force bool
	cmd := &cobra.Command{
		Use:   "add --name NAME --base-url URL [flags]",
		Short: "Register an HTTP API by its base URL",
		Long: `Register an HTTP API by its base URL. Requests to that scheme, host, port
and path prefix get the provider's stored credential:

  --header "Authorization: Bearer"   Authorization: Bearer <secret> (the default)
  --header "x-api-key:"              x-api-key: <secret>
  --query-param key                  ?key=<secret> in the URL
  --basic                            HTTP Basic; the secret is user:password

Store the credential afterwards with "cordon secret set NAME".`,
		Example: `  cordon provider add --name my-llm --base-url https://llm.internal.example.com/v1 --api openai
  cordon provider add --name ollama --base-url http://127.0.0.1:11434 --header "Authorization: Bearer"
  cordon provider add --name corp --base-url https://gw.corp.example/ai --ca-cert corp-ca.pem`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if spec.Name == "" {
				return usagef("--name is required")
			}
			if spec.BaseURL == "" {
				return usagef("--base-url is required")
			}
			if spec.CACert != "" {
				abs, err := filepath.Abs(spec.CACert)
				if err != nil {
					return &usageError{err: err}
				}
				spec.CACert = abs
			}
			if _, err := spec.Build(); err != nil {
				return &usageError{err: err}
			}
			reg, err := e.registry()
			if err != nil {
				return err
			}
			p, err := reg.Add(spec, force)
			switch {
			case errors.Is(err, provider.ErrExists):
				return withHint(&usageError{err: err}, "add --force to replace it")
			case errors.Is(err, provider.ErrConflict):
				return &usageError{err: err}
			case err != nil:
				return err
			}

			endpoint := p.Endpoints[0]
			if endpoint.Scheme == "http" {
				e.warnf("%s is plain HTTP: the credential will travel unencrypted to %s", endpoint, endpoint.Host)
			}
			e.infof("registered provider %s for %s (%s)", p.Name, endpoint, p.Auth)
			e.infof("store its credential with: cordon secret set %s", p.Name)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Name, "name", "", "provider name: lower-case letters, digits, '-', '_', '.'")
	f.StringVar(&spec.BaseURL, "base-url", "", "base URL; requests under it get the credential")
	f.StringVar(&spec.Header, "header", "", `credential header, "NAME: PREFIX" or "NAME:" for the raw value`)
	f.StringVar(&spec.QueryParam, "query-param", "", "send the credential as this URL query parameter")
	f.BoolVar(&spec.Basic, "basic", false, "send HTTP Basic authentication; the secret is user:password")
	f.StringVar(&spec.CACert, "ca-cert", "", "PEM file with the CA that signs the endpoint's certificate")
	f.StringVar(&spec.Address, "resolve", "", "connect to this IP address instead of resolving the base URL's host")
	f.StringVar(&spec.API, "api", "", "API style, openai or anthropic: sandboxes get OPENAI_BASE_URL or ANTHROPIC_BASE_URL (anthropic defaults the header to x-api-key)")
	f.StringSliceVar(&spec.Env, "env", nil, "environment variable agents read the key from (repeatable)")
	f.BoolVar(&force, "force", false, "replace a provider of the same name")
	cmd.MarkFlagsMutuallyExclusive("header", "query-param", "basic")
	return cmd
}

// providerJSON is the stable JSON form of a provider.
type providerJSON struct {
	Name       string         `json:"name"`
	Builtin    bool           `json:"builtin"`
	Title      string         `json:"title,omitempty"`
	BaseURLs   []string       `json:"base_urls"`
	Credential credentialJSON `json:"credential"`
	CACert     string         `json:"ca_cert,omitempty"`
	Address    string         `json:"address,omitempty"`
	API        string         `json:"api,omitempty"`
	Env        []string       `json:"env"`
}

type credentialJSON struct {
	Form   string `json:"form"` // header, query, basic
	Header string `json:"header,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Param  string `json:"param,omitempty"`
}

func toJSON(p *provider.Provider) providerJSON {
	out := providerJSON{
		Name: p.Name, Builtin: p.Builtin, Title: p.Title,
		CACert: p.CACert, API: string(p.API), Env: p.Env,
	}
	if out.Env == nil {
		out.Env = []string{}
	}
	if p.Address.IsValid() {
		out.Address = p.Address.String()
	}
	for _, e := range p.Endpoints {
		out.BaseURLs = append(out.BaseURLs, e.String())
	}
	switch p.Auth.Kind {
	case provider.AuthQuery:
		out.Credential = credentialJSON{Form: "query", Param: p.Auth.Param}
	case provider.AuthBasic:
		out.Credential = credentialJSON{Form: "basic", Header: p.Auth.Header}
	default:
		out.Credential = credentialJSON{Form: "header", Header: p.Auth.Header, Prefix: p.Auth.Prefix}
	}
	return out
}

func newProviderLsCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List built-in and registered providers",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := e.registry()
			if err != nil {
				return err
			}
			set, err := reg.Set()
			if err != nil {
				return err
			}
			if asJSON {
				out := []providerJSON{}
				for _, p := range set.All() {
					out = append(out, toJSON(p))
				}
				return writeJSON(e.stdout, out)
			}
			t := newTable(e.stdout, "NAME", "KIND", "BASE URL", "CREDENTIAL", "API")
			for _, p := range set.All() {
				kind := "registered"
				if p.Builtin {
					kind = "built-in"
				}
				base := p.BaseURL()
				if n := len(p.Endpoints); n > 1 {
					base += fmt.Sprintf(" (+%d)", n-1)
				}
				t.row(p.Name, kind, base, p.Auth.String(), string(p.API))
			}
			return t.flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newProviderShowCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show one provider in full",
		Args:  exactArgs(1, "a provider name"),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			return e.providerNames(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := e.lookupProvider(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(e.stdout, toJSON(p))
			}
			j := toJSON(p)
			kind := "registered"
			if p.Builtin {
				kind = "built-in (" + p.Title + ")"
			}
			fmt.Fprintf(e.stdout, "name:        %s\n", p.Name)
			fmt.Fprintf(e.stdout, "kind:        %s\n", kind)
			fmt.Fprintf(e.stdout, "base URLs:   %s\n", strings.Join(j.BaseURLs, ", "))
			fmt.Fprintf(e.stdout, "credential:  %s\n", p.Auth)
			fmt.Fprintf(e.stdout, "CA:          %s\n", orDash(p.CACert, "system roots"))
			fmt.Fprintf(e.stdout, "address:     %s\n", orDash(j.Address, "from DNS"))
			fmt.Fprintf(e.stdout, "API style:   %s\n", orDash(string(p.API), "-"))
			fmt.Fprintf(e.stdout, "env:         %s\n", orDash(strings.Join(p.Env, ", "), "-"))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func orDash(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// lookupProvider finds a provider by name; an unknown name is bad input.
func (e *env) lookupProvider(name string) (*provider.Provider, error) {
	reg, err := e.registry()
	if err != nil {
		return nil, err
	}
	set, err := reg.Set()
	if err != nil {
		return nil, err
	}
	p := set.Lookup(name)
	if p == nil {
		return nil, withHint(usagef("unknown provider %q", name),
			`"cordon provider ls" lists them; register one with "cordon provider add"`)
	}
	return p, nil
}

// providerNames lists provider names for shell completion.
func (e *env) providerNames() []string {
	reg, err := e.registry()
	if err != nil {
		return nil
	}
	set, err := reg.Set()
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range set.All() {
		out = append(out, p.Name)
	}
	return out
}

func newProviderRmCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"remove"},
		Short:   "Unregister a provider",
		Long: `Unregister a provider. Its stored secrets are kept, so registering it again
under the same name restores injection; remove them with "cordon secret rm".`,
		Args: exactArgs(1, "a provider name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := e.registry()
			if err != nil {
				return err
			}
			err = reg.Remove(args[0])
			if errors.Is(err, provider.ErrUnknown) || errors.Is(err, provider.ErrBuiltin) {
				return &usageError{err: err}
			}
			if err != nil {
				return err
			}
			e.infof("removed provider %s", args[0])
			return nil
		},
	}
}
