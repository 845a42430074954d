package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cordon-dev/cordon/internal/hostname"
	"github.com/cordon-dev/cordon/internal/names"
	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/secret"
)

// maxSecretLen bounds a value read from stdin, so that piping a large file
// by mistake fails clearly instead of storing it.
const maxSecretLen = 16 << 10

func newSecretCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Store the credentials cordon injects",
		Long: `Secrets are the credentials cordon injects into requests to their provider.
They are encrypted at rest and never enter a sandbox: inside, the provider's
key variables hold a placeholder.

A secret is global (every sandbox) or scoped to one sandbox, which then uses
it instead of the global one.`,
		Args: noArgs,
	}
	cmd.AddCommand(newSecretSetCmd(e), newSecretLsCmd(e), newSecretRmCmd(e), newSecretImportCmd(e))
	return cmd
}

// secrets opens the secret store in cordon's data directory.
func (e *env) secrets() (*secret.FileStore, error) {
	dirs, err := e.state()
	if err != nil {
		return nil, err
	}
	return secret.OpenFile(dirs.Data)
}

// scopeFlags are the -g/--global and --sandbox flags shared by set and rm.
type scopeFlags struct {
	global  bool
	sandbox string
}

func (s *scopeFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVarP(&s.global, "global", "g", false, "the global scope, used by every sandbox (the default)")
	cmd.Flags().StringVar(&s.sandbox, "sandbox", "", "scope to one sandbox, which uses it instead of the global one")
}

func (s *scopeFlags) scope(cmd *cobra.Command) (secret.Scope, error) {
	if s.global && cmd.Flags().Changed("sandbox") {
		return secret.Scope{}, usagef("choose -g/--global or --sandbox, not both")
	}
	if !cmd.Flags().Changed("sandbox") {
		return secret.Global(), nil
	}
	if err := names.Check("sandbox", s.sandbox); err != nil {
		return secret.Scope{}, &usageError{err: err}
	}
	return secret.ForSandbox(s.sandbox), nil
}

func newSecretSetCmd(e *env) *cobra.Command {
	var scope scopeFlags
	var force bool
	var host, header string
	cmd := &cobra.Command{
		Use:   "set [-g | --sandbox NAME] [--force] SERVICE",
		Short: "Store a provider's credential",
		Long: `Store a provider's credential. The value is read from a hidden prompt when
stdin is a terminal, otherwise from stdin (one trailing newline is dropped);
it is never taken from the command line.

With --host and --header instead of SERVICE, register a provider for
https://HOST with that header and store its credential in one step.`,
		Example: `  cordon secret set -g openai
  printf %s "$KEY" | cordon secret set my-llm
  cordon secret set --sandbox review-bot github
  cordon secret set --host llm.internal.example.com --header "Authorization: Bearer"`,
		Args: func(cmd *cobra.Command, args []string) error {
			if host != "" {
				return noArgs(cmd, args)
			}
			return exactArgs(1, "a provider name (or --host)")(cmd, args)
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			return e.providerNames(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := scope.scope(cmd)
			if err != nil {
				return err
			}
			if header != "" && host == "" {
				return usagef("--header goes with --host; to change a registered provider's header use \"cordon provider add --force\"")
			}

			// Check everything about the destination before asking for the
			// value, so that a typo costs no retyping.
			var spec *provider.Spec
			var service string
			if host != "" {
				spec, err = hostSpec(host, header)
				if err != nil {
					return err
				}
				service = spec.Name
				if err := e.checkHostProvider(*spec, force); err != nil {
					return err
				}
			} else {
				service = args[0]
				if _, err := e.lookupProvider(service); err != nil {
					return err
				}
			}

			store, err := e.secrets()
			if err != nil {
				return err
			}
			if !force {
				snap, err := store.Snapshot()
				if err != nil {
					return err
				}
				if existing, ok := snap.Lookup(sc.Sandbox, service); ok && existing.Scope == sc {
					return withHint(usagef("a %s secret for %s is already stored", sc, service),
						"add --force to replace it")
				}
			}

			value, err := e.readSecret(fmt.Sprintf("%s secret for %s: ", sc, service))
			if err != nil {
				return err
			}
			if err := secret.ValidateValue(value); err != nil {
				return &usageError{err: err}
			}

			if spec != nil {
				reg, err := e.registry()
				if err != nil {
					return err
				}
				if _, err := reg.Add(*spec, true); err != nil {
					return err
				}
				e.infof("registered provider %s for https://%s (%s)", spec.Name, spec.Name, spec.Header)
			}
			if err := store.Set(sc, service, value, force); err != nil {
				if errors.Is(err, secret.ErrExists) {
					return withHint(usagef("a %s secret for %s is already stored", sc, service),
						"add --force to replace it")
				}
				return err
			}
			e.infof("stored %s secret for %s (%s)", sc, service, secret.Mask(value))
			return nil
		},
	}
	scope.register(cmd)
	f := cmd.Flags()
	f.BoolVar(&force, "force", false, "replace an existing secret (and, with --host, a provider of that name)")
	f.StringVar(&host, "host", "", "register a provider for https://HOST and store its secret")
	f.StringVar(&header, "header", "", `with --host: the credential header, "NAME: PREFIX" or "NAME:"`)
	return cmd
}

// hostSpec builds the provider that `secret set --host HOST --header SPEC`
// registers. The provider is named after the normalised host.
func hostSpec(host, header string) (*provider.Spec, error) {
	name, err := hostname.Normalize(host)
	if err != nil {
		return nil, &usageError{err: fmt.Errorf("--host: %v", err)}
	}
	if hostname.IsIP(name) || strings.ContainsAny(host, ":/") {
		return nil, usagef("--host takes a host name such as llm.example.com; for an address, port or path use \"cordon provider add --base-url\"")
	}
	if header == "" {
		header = provider.Bearer.Spec()
	}
	spec := &provider.Spec{Name: name, BaseURL: "https://" + name, Header: header}
	if _, err := spec.Build(); err != nil {
		return nil, &usageError{err: err}
	}
	return spec, nil
}

// checkHostProvider makes sure that registering spec would not silently
// change an existing provider.
func (e *env) checkHostProvider(spec provider.Spec, force bool) error {
	reg, err := e.registry()
	if err != nil {
		return err
	}
	set, err := reg.Set()
	if err != nil {
		return err
	}
	want, _ := spec.Build()
	existing := set.Lookup(spec.Name)
	if existing == nil || force {
		return nil
	}
	if existing.BaseURL() != want.BaseURL() || existing.Auth != want.Auth {
		return withHint(usagef("provider %s exists with %s and %s", existing.Name, existing.BaseURL(), existing.Auth),
			"add --force to replace it")
	}
	return nil
}

// readSecret reads a value from a hidden prompt when stdin is a terminal,
// otherwise from stdin with one trailing newline removed.
func (e *env) readSecret(prompt string) (string, error) {
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(e.stderr, prompt)
		value, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			return "", fmt.Errorf("reading the secret: %w", err)
		}
		return string(value), nil
	}

	data, err := io.ReadAll(io.LimitReader(e.stdin, maxSecretLen+1))
	if err != nil {
		return "", fmt.Errorf("reading the secret from stdin: %w", err)
	}
	if len(data) > maxSecretLen {
		return "", usagef("the secret on stdin is longer than %d bytes", maxSecretLen)
	}
	value := string(data)
	if strings.HasSuffix(value, "\n") {
		value = strings.TrimSuffix(strings.TrimSuffix(value, "\n"), "\r")
	}
	if value == "" {
		return "", withHint(usagef("no secret on stdin"),
			`pipe the value in, for example: printf %s "$KEY" | cordon secret set NAME`)
	}
	return value, nil
}

// secretJSON is the stable JSON form of a stored secret. It never holds
// the value, only its masked form.
type secretJSON struct {
	Scope   string    `json:"scope"`
	Service string    `json:"service"`
	Masked  string    `json:"masked"`
	Updated time.Time `json:"updated"`
}

func newSecretLsCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List stored secrets (values masked)",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := e.secrets()
			if err != nil {
				return err
			}
			snap, err := store.Snapshot()
			if err != nil {
				return err
			}
			entries := snap.Entries()
			if asJSON {
				out := []secretJSON{}
				for _, s := range entries {
					out = append(out, secretJSON{s.Scope.String(), s.Service, secret.Mask(s.Value), s.Updated.UTC()})
				}
				return writeJSON(e.stdout, out)
			}
			if len(entries) == 0 {
				e.infof(`no secrets stored; add one with "cordon secret set PROVIDER"`)
				return nil
			}
			t := newTable(e.stdout, "SCOPE", "SERVICE", "VALUE", "UPDATED")
			for _, s := range entries {
				t.row(s.Scope.String(), s.Service, secret.Mask(s.Value), s.Updated.Local().Format(time.DateTime))
			}
			return t.flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newSecretRmCmd(e *env) *cobra.Command {
	var scope scopeFlags
	cmd := &cobra.Command{
		Use:     "rm [-g | --sandbox NAME] SERVICE",
		Aliases: []string{"remove"},
		Short:   "Remove a stored secret",
		Args:    exactArgs(1, "a service name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := scope.scope(cmd)
			if err != nil {
				return err
			}
			if err := names.Check("provider", args[0]); err != nil {
				return &usageError{err: err}
			}
			store, err := e.secrets()
			if err != nil {
				return err
			}
			err = store.Delete(sc, args[0])
			if errors.Is(err, secret.ErrNotFound) {
				return usagef("no %s secret for %q", sc, args[0])
			}
			if err != nil {
				return err
			}
			e.infof("removed %s secret for %s", sc, args[0])
			return nil
		},
	}
	scope.register(cmd)
	return cmd
}

func newSecretImportCmd(e *env) *cobra.Command {
	var all, force, dryRun bool
	cmd := &cobra.Command{
		Use:   "import [--all] [--force] [--dry-run]",
		Short: "Store the built-in providers' keys found in the environment",
		Long: `Look for the built-in providers' key variables (OPENAI_API_KEY,
ANTHROPIC_API_KEY, GH_TOKEN, ...) in the environment and store their values
as global secrets. On a terminal it asks before storing; --all stores
without asking. Secrets already stored are kept unless --force is given.
Afterwards the variables can be removed from your shell profile.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := e.secrets()
			if err != nil {
				return err
			}
			snap, err := store.Snapshot()
			if err != nil {
				return err
			}

			type candidate struct{ service, variable, value string }
			var found []candidate
			for _, p := range provider.Builtins() {
				for _, v := range p.Env {
					value := e.getenv(v)
					if value == "" {
						continue
					}
					if err := secret.ValidateValue(value); err != nil {
						e.warnf("skipping %s: %v", v, err)
						break
					}
					if existing, ok := snap.Lookup("", p.Name); ok && !force {
						e.infof("%-12s %s: kept the stored secret (%s); --force replaces it",
							p.Name, v, secret.Mask(existing.Value))
						break
					}
					found = append(found, candidate{p.Name, v, value})
					break
				}
			}
			if len(found) == 0 {
				e.infof("nothing to import")
				return nil
			}

			for _, c := range found {
				e.infof("%-12s from %s (%s)", c.service, c.variable, secret.Mask(c.value))
			}
			if dryRun {
				e.infof("dry run: nothing stored")
				return nil
			}
			if !all {
				ok, err := e.confirm(fmt.Sprintf("store %d secret(s) globally? [y/N] ", len(found)))
				if err != nil {
					return err
				}
				if !ok {
					e.infof("nothing stored")
					return nil
				}
			}
			for _, c := range found {
				if err := store.Set(secret.Global(), c.service, c.value, force); err != nil {
					return fmt.Errorf("storing %s: %w", c.service, err)
				}
			}
			e.infof("stored %d secret(s)", len(found))
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&all, "all", false, "store everything found without asking")
	f.BoolVar(&force, "force", false, "replace secrets that are already stored")
	f.BoolVar(&dryRun, "dry-run", false, "show what would be stored and store nothing")
	return cmd
}

// confirm asks a yes/no question on a terminal. Without a terminal it is
// an error: scripts must say --all.
func (e *env) confirm(question string) (bool, error) {
	f, ok := e.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false, withHint(usagef("stdin is not a terminal, so cordon cannot ask"),
			"add --all to import without asking, or --dry-run to see what would be imported")
	}
	fmt.Fprint(e.stderr, question)
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes", nil
}
