package cli

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cordon-dev/cordon/internal/agent"
	"github.com/cordon-dev/cordon/internal/names"
	"github.com/cordon-dev/cordon/internal/policy"
	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/sandbox"
	"github.com/cordon-dev/cordon/internal/secret"
)

// sandboxStore opens the sandboxes' store.
func (e *env) sandboxStore() (*sandbox.Store, error) {
	dirs, err := e.state()
	if err != nil {
		return nil, err
	}
	return sandbox.OpenStore(dirs.State, dirs.Runtime), nil
}

// sandboxNames lists sandbox names for shell completion.
func (e *env) sandboxNames() []string {
	store, err := e.sandboxStore()
	if err != nil {
		return nil
	}
	records, _ := store.List()
	var out []string
	for _, r := range records {
		out = append(out, r.Name)
	}
	return out
}

// existingSandbox reads a sandbox's record; an unknown name is bad input.
func (e *env) existingSandbox(name string) (*sandbox.Store, *sandbox.Record, error) {
	if err := names.Check("sandbox", name); err != nil {
		return nil, nil, &usageError{err: err}
	}
	store, err := e.sandboxStore()
	if err != nil {
		return nil, nil, err
	}
	r, err := store.Get(name)
	if errors.Is(err, sandbox.ErrNotFound) {
		return nil, nil, withHint(usagef("no sandbox named %s", name), `"cordon ls" lists them`)
	}
	return store, r, err
}

func newExecCmd(e *env) *cobra.Command {
	var envFlags []string
	cmd := &cobra.Command{
		Use:   "exec NAME -- COMMAND [ARGS...]",
		Short: "Run a command in a running sandbox",
		Long: `Run a command in a running sandbox: the same namespaces, files and proxy as
its agent, with the same environment. It starts in the first workspace and
exits with the command's exit code.`,
		Example: `  cordon exec opencode-project -- git status
  cordon exec opencode-project -- bash`,
		Args: minArgs(2, "a sandbox name and a command"),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return e.sandboxNames(), cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveDefault
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name, command := args[0], args[1:]
			if cmd.ArgsLenAtDash() > 1 {
				return usagef("cordon exec takes one sandbox name before --")
			}
			extra, err := parseEnvFlags(envFlags)
			if err != nil {
				return err
			}
			store, r, err := e.existingSandbox(name)
			if err != nil {
				return err
			}
			if running, _ := store.Running(name); !running {
				return withHint(fmt.Errorf("sandbox %s is not running", name),
					fmt.Sprintf("start it with: cordon run --name %s %s", name, r.Agent))
			}
			h := &sandboxHost{}
			dirs, err := e.state()
			if err != nil {
				return err
			}
			if h.secrets, err = e.secrets(); err != nil {
				return err
			}
			defer h.secrets.Close()
			h.registry = provider.OpenRegistry(dirs.Config)
			environ, _, err := e.sandboxEnv(h, name, runOptions{}, extra)
			if err != nil {
				return err
			}
			// The agent's preset environment applies to everything run in
			// its sandbox; its extra arguments only to its own program.
			environ, launched, err := e.presetLaunch(h, name, r.Agent, environ, command)
			if err != nil {
				return err
			}
			if preset, err := agent.Lookup(r.Agent); err == nil && preset.Program != "" &&
				filepath.Base(command[0]) == preset.Program {
				command = launched
			}
			dir := "/"
			if len(r.Workspaces) > 0 {
				dir = r.Workspaces[0].Target
			}
			code, err := e.attach(store.RuntimeDir(name), sandbox.Command{Args: command, Env: environ, Dir: dir}, nil)
			if err != nil {
				return err
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&envFlags, "env", "e", nil, "set KEY=VALUE in the command's environment (repeatable)")
	return cmd
}

// sandboxJSON is the stable JSON form of a sandbox in cordon ls.
type sandboxJSON struct {
	Name       string          `json:"name"`
	Agent      string          `json:"agent"`
	Status     string          `json:"status"`
	Workspaces []sandbox.Mount `json:"workspaces"`
	Created    time.Time       `json:"created"`
}

func newLsCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List sandboxes",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := e.sandboxStore()
			if err != nil {
				return err
			}
			records, listErr := store.List()
			var out []sandboxJSON
			for _, r := range records {
				status := "stopped"
				if running, _ := store.Running(r.Name); running {
					status = "running"
				}
				out = append(out, sandboxJSON{r.Name, r.Agent, status, r.Workspaces, r.Created})
			}
			if listErr != nil {
				e.warnf("%v", listErr)
			}
			if asJSON {
				if out == nil {
					out = []sandboxJSON{}
				}
				return writeJSON(e.stdout, out)
			}
			if len(out) == 0 {
				e.infof(`no sandboxes; create one with "cordon run AGENT [DIR]"`)
				return nil
			}
			t := newTable(e.stdout, "NAME", "AGENT", "STATUS", "WORKSPACES", "CREATED")
			for _, s := range out {
				var ws []string
				for _, w := range s.Workspaces {
					if w.ReadOnly {
						ws = append(ws, w.Source+":ro")
					} else {
						ws = append(ws, w.Source)
					}
				}
				t.row(s.Name, s.Agent, s.Status, strings.Join(ws, ", "), s.Created.Local().Format(time.DateTime))
			}
			return t.flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newStopCmd(e *env) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "stop NAME",
		Short: "Stop a running sandbox",
		Long: `Stop a running sandbox: its agent gets SIGTERM, and everything inside is
killed once the agent exits or after --timeout. The writable layer and home
are kept for the next "cordon run".`,
		Args: exactArgs(1, "a sandbox name"),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			return e.sandboxNames(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait <= 0 {
				return usagef("--timeout must be positive")
			}
			store, _, err := e.existingSandbox(args[0])
			if err != nil {
				return err
			}
			running, pid := store.Running(args[0])
			if !running {
				e.infof("sandbox %s is not running", args[0])
				return nil
			}
			if pid <= 0 {
				return fmt.Errorf("sandbox %s is running but its process is unknown", args[0])
			}
			if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
				return fmt.Errorf("stopping sandbox %s: %w", args[0], err)
			}
			deadline := time.Now().Add(wait)
			for time.Now().Before(deadline) {
				if running, _ := store.Running(args[0]); !running {
					e.infof("stopped sandbox %s", args[0])
					return nil
				}
				time.Sleep(20 * time.Millisecond)
			}
			// The agent ignored SIGTERM: a second one makes cordon run end
			// the sandbox at once.
			syscall.Kill(pid, syscall.SIGKILL)
			for i := 0; i < 100; i++ {
				if running, _ := store.Running(args[0]); !running {
					e.infof("killed sandbox %s", args[0])
					return nil
				}
				time.Sleep(20 * time.Millisecond)
			}
			return fmt.Errorf("sandbox %s did not stop", args[0])
		},
	}
	cmd.Flags().DurationVar(&wait, "timeout", 10*time.Second, "how long the agent may take to exit before it is killed")
	return cmd
}

func newRmCmd(e *env) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove sandboxes: their writable layer, home, scoped secrets and rules",
		Args:    minArgs(1, "at least one sandbox name"),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			return e.sandboxNames(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			// Check every name first, so that one typo removes nothing.
			for _, name := range args {
				store, _, err := e.existingSandbox(name)
				if err != nil {
					return err
				}
				if running, _ := store.Running(name); running && !force {
					return withHint(usagef("sandbox %s is running", name),
						fmt.Sprintf("stop it first (cordon stop %s) or add --force", name))
				}
			}
			dirs, err := e.state()
			if err != nil {
				return err
			}
			secrets, err := e.secrets()
			if err != nil {
				return err
			}
			defer secrets.Close()
			for _, name := range args {
				store, _ := e.sandboxStore()
				if running, pid := store.Running(name); running && force && pid > 0 {
					syscall.Kill(pid, syscall.SIGKILL)
					for i := 0; i < 100; i++ {
						if r, _ := store.Running(name); !r {
							break
						}
						time.Sleep(20 * time.Millisecond)
					}
				}
				if err := store.Remove(name); err != nil {
					return err
				}
				n, err := secrets.DeleteScope(secret.ForSandbox(name))
				if err != nil {
					return fmt.Errorf("removing the secrets of sandbox %s: %w", name, err)
				}
				rules, err := policy.OpenStore(dirs.Config).RemoveSandbox(name)
				if err != nil {
					return fmt.Errorf("removing the rules of sandbox %s: %w", name, err)
				}
				e.infof("removed sandbox %s (%d secret(s), %d rule(s))", name, n, len(rules))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "kill running sandboxes first")
	return cmd
}
