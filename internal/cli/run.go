package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/cordon-dev/cordon/internal/agent"
	"github.com/cordon-dev/cordon/internal/audit"
	"github.com/cordon-dev/cordon/internal/names"
	"github.com/cordon-dev/cordon/internal/policy"
	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/proxy"
	"github.com/cordon-dev/cordon/internal/sandbox"
	"github.com/cordon-dev/cordon/internal/secret"
)

// runOptions are the flags of cordon run.
type runOptions struct {
	name      string
	env       []string
	allow     []string
	deny      []string
	bypass    []string
	openai    string
	anthropic string
}

func newRunCmd(e *env) *cobra.Command {
	var opts runOptions
	cmd := &cobra.Command{
		Use:   "run [flags] AGENT [WORKSPACE[:ro]...] [-- AGENT_ARGS...]",
		Short: "Run an agent in a sandbox",
		Long: `Run an agent in a sandbox whose only way out is cordon's proxy, attached to
this terminal. The sandbox is created on first use (named AGENT-<directory>
unless --name says otherwise) and keeps its writable layer and home until
"cordon rm". Workspaces (the current directory by default) are mounted at
their own paths, read-write, or read-only with ":ro".

Inside, the host's files are read-only under a copy-on-write layer, the home
directory is the sandbox's own, and cordon's state and your credential files
are not there. Providers with a stored secret see a placeholder in their key
variables; the proxy on the host puts the real key in each request.

cordon run exits with the agent's exit code.`,
		Example: `  cordon run shell
  cordon run shell ~/src/project -- -c 'curl -s https://llm.internal.example.com/v1/models'
  cordon run --name review opencode ~/src/project ~/docs:ro
  cordon run --allow-host '**.internal.example.com' shell`,
		Args: minArgs(1, "an agent (one of "+strings.Join(agent.Names(), ", ")+")"),
		RunE: func(cmd *cobra.Command, args []string) error {
			positional, agentArgs := splitAtDash(cmd, args)
			if len(positional) == 0 {
				return usagef("cordon run needs an agent (one of %s)", strings.Join(agent.Names(), ", "))
			}
			code, err := e.run(opts, positional[0], positional[1:], agentArgs)
			if err != nil {
				return err
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return agent.Names(), cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveFilterDirs
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.name, "name", "", "the sandbox's name (default AGENT-<base name of the first workspace>)")
	f.StringArrayVarP(&opts.env, "env", "e", nil, "set KEY=VALUE in the agent's environment (repeatable)")
	f.StringArrayVar(&opts.allow, "allow-host", nil, "allow hosts for this sandbox, as in cordon policy allow (repeatable)")
	f.StringArrayVar(&opts.deny, "deny-host", nil, "deny hosts for this sandbox (repeatable)")
	f.StringArrayVar(&opts.bypass, "bypass-host", nil, "tunnel hosts without interception for this sandbox (repeatable)")
	f.StringVar(&opts.openai, "openai", "", "registered provider that OPENAI_BASE_URL points at, when several declare --api openai")
	f.StringVar(&opts.anthropic, "anthropic", "", "registered provider that ANTHROPIC_BASE_URL points at, when several declare --api anthropic")
	return cmd
}

// splitAtDash separates the arguments before "--" from those after.
func splitAtDash(cmd *cobra.Command, args []string) (before, after []string) {
	if i := cmd.ArgsLenAtDash(); i >= 0 {
		return args[:i], args[i:]
	}
	return args, nil
}

// parseWorkspaces resolves WORKSPACE[:ro] arguments to mounts at the same
// path; none means the current directory.
func parseWorkspaces(args []string) ([]sandbox.Mount, error) {
	if len(args) == 0 {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		args = []string{wd}
	}
	var out []sandbox.Mount
	for _, arg := range args {
		path, ro := arg, false
		if p, ok := strings.CutSuffix(arg, ":ro"); ok {
			path, ro = p, true
		} else if p, ok := strings.CutSuffix(arg, ":rw"); ok {
			path = p
		}
		if path == "" {
			return nil, usagef("empty workspace path in %q", arg)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, &usageError{err: err}
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			abs = real
		}
		info, err := os.Stat(abs)
		if err != nil {
			return nil, usagef("workspace %s: %v", path, errors.Unwrap(err))
		}
		if !info.IsDir() {
			return nil, usagef("workspace %s is not a directory", path)
		}
		if abs == "/" {
			return nil, usagef("the root directory cannot be a workspace")
		}
		if slices.ContainsFunc(out, func(m sandbox.Mount) bool { return m.Source == abs }) {
			continue
		}
		out = append(out, sandbox.Mount{Source: abs, Target: abs, ReadOnly: ro})
	}
	return out, nil
}

// defaultName makes AGENT-<base name> into a valid sandbox name.
func defaultName(agentName, dir string) string {
	base := strings.ToLower(filepath.Base(dir))
	var b strings.Builder
	for _, r := range base {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := agentName + "-" + strings.Trim(b.String(), "-._")
	if len(name) > names.MaxLen {
		name = name[:names.MaxLen]
	}
	return strings.TrimRight(name, "-._")
}

// run creates or reuses a sandbox, runs the agent in it, and returns the
// agent's exit code.
func (e *env) run(opts runOptions, agentName string, workspaceArgs, agentArgs []string) (int, error) {
	preset, err := agent.Lookup(agentName)
	if err != nil {
		return 0, &usageError{err: err}
	}
	workspaces, err := parseWorkspaces(workspaceArgs)
	if err != nil {
		return 0, err
	}
	name := opts.name
	if name == "" {
		name = defaultName(preset.Name, workspaces[0].Source)
	}
	if err := names.Check("sandbox", name); err != nil {
		return 0, &usageError{err: err}
	}
	extraEnv, err := parseEnvFlags(opts.env)
	if err != nil {
		return 0, err
	}
	rules, err := hostFlagRules(name, opts)
	if err != nil {
		return 0, err
	}
	argv, err := preset.Command(agentArgs, e.getenv)
	if err != nil {
		return 0, err
	}
	if err := e.checkAPIChoices(opts); err != nil {
		return 0, err
	}

	return e.runIn(opts, name, preset.Name, workspaces, sandbox.Command{Args: argv}, rules, extraEnv)
}

// runIn runs argv in the named sandbox, creating it if needed, and returns
// its exit code.
func (e *env) runIn(opts runOptions, name, agentName string, workspaces []sandbox.Mount, cmd sandbox.Command,
	rules []policy.Rule, extraEnv []string) (int, error) {
	dirs, err := e.state()
	if err != nil {
		return 0, err
	}
	store := sandbox.OpenStore(dirs.State, dirs.Runtime)
	lock, err := store.Lock(name)
	if errors.Is(err, sandbox.ErrRunning) {
		return 0, withHint(fmt.Errorf("sandbox %s is already running", name),
			fmt.Sprintf("run a command in it with: cordon exec %s -- COMMAND", name))
	}
	if err != nil {
		return 0, err
	}
	defer lock.Unlock()
	if _, err := store.Get(name); errors.Is(err, sandbox.ErrNotFound) {
		if err := store.Create(sandbox.Record{Name: name, Agent: agentName, Workspaces: workspaces, Created: time.Now().UTC()}); err != nil {
			return 0, err
		}
		e.infof("created sandbox %s", name)
	} else if err != nil {
		return 0, err
	}
	if len(rules) > 0 {
		if _, err := policy.OpenStore(dirs.Config).Add(rules...); err != nil {
			return 0, err
		}
	}

	h, err := e.startHost(name, store)
	if err != nil {
		return 0, err
	}
	defer h.close()

	environ, notes, err := e.sandboxEnv(h, name, opts, extraEnv)
	if err != nil {
		return 0, err
	}
	environ, cmd.Args, err = e.presetLaunch(h, name, agentName, environ, cmd.Args)
	if err != nil {
		return 0, err
	}
	for _, n := range notes {
		e.infof("%s", n)
	}

	bridges, err := loopbackBridges(h)
	if err != nil {
		return 0, err
	}
	sb, err := sandbox.Start(sandbox.Spec{
		Name: name, Dir: store.Dir(name), RuntimeDir: h.runtimeDir,
		HomePath: e.homePath(), Workspaces: workspaces, Hide: e.hiddenPaths(dirs),
		CABundle: h.bundle, CACert: h.ca, Bridges: bridges,
	})
	if err != nil {
		var setup *sandbox.SetupError
		if errors.As(err, &setup) {
			return 0, withHint(err, setup.Fix)
		}
		return 0, err
	}
	defer sb.Kill()

	cmd.Env, cmd.Dir = environ, workspaces[0].Target
	return e.attach(h.runtimeDir, cmd, sb.Done())
}

// loopbackBridges lists the registered providers on the host's loopback.
// Inside a sandbox localhost is the sandbox's own, and clients keep it
// away from the proxy, so each such port is bridged to the proxy.
func loopbackBridges(h *sandboxHost) ([]sandbox.Bridge, error) {
	set, err := h.registry.Set()
	if err != nil {
		return nil, err
	}
	var out []sandbox.Bridge
	seen := map[int]bool{}
	for _, p := range set.All() {
		for _, ep := range p.Endpoints {
			loopback := ep.Host == "localhost"
			if addr, err := netip.ParseAddr(ep.Host); err == nil && addr.IsLoopback() {
				loopback = true
			}
			if p.Builtin || !loopback || seen[ep.Port] {
				continue
			}
			seen[ep.Port] = true
			out = append(out, sandbox.Bridge{Host: ep.Host, Port: ep.Port})
		}
	}
	return out, nil
}

// checkAPIChoices makes sure --openai and --anthropic name registered
// providers of that style, before anything is created.
func (e *env) checkAPIChoices(opts runOptions) error {
	for _, c := range []struct {
		flag, name string
		api        provider.API
	}{{"--openai", opts.openai, provider.APIOpenAI}, {"--anthropic", opts.anthropic, provider.APIAnthropic}} {
		if c.name == "" {
			continue
		}
		reg, err := e.registry()
		if err != nil {
			return err
		}
		set, err := reg.Set()
		if err != nil {
			return err
		}
		if p := set.Lookup(c.name); p == nil || p.Builtin || p.API != c.api {
			return usagef("%s %s: no registered provider of that name declares --api %s", c.flag, c.name, c.api)
		}
	}
	return nil
}

// parseEnvFlags checks -e KEY=VALUE values.
func parseEnvFlags(values []string) ([]string, error) {
	for _, kv := range values {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, "\x00") || strings.Contains(kv, "\x00") {
			return nil, usagef("-e %q: want KEY=VALUE", kv)
		}
	}
	return values, nil
}

// hostFlagRules turns --allow-host, --deny-host and --bypass-host into
// rules scoped to the sandbox.
func hostFlagRules(name string, opts runOptions) ([]policy.Rule, error) {
	var rules []policy.Rule
	for _, group := range []struct {
		action policy.Action
		flag   string
		values []string
	}{
		{policy.Allow, "--allow-host", opts.allow},
		{policy.Deny, "--deny-host", opts.deny},
		{policy.Bypass, "--bypass-host", opts.bypass},
	} {
		for _, v := range group.values {
			patterns, err := policy.ParseHostList(v)
			if err != nil {
				return nil, usagef("%s %q: %v", group.flag, v, err)
			}
			for _, p := range patterns {
				r, err := policy.NewRule(group.action, p, name, "", "")
				if err != nil {
					return nil, usagef("%s %q: %v", group.flag, v, err)
				}
				rules = append(rules, r)
			}
		}
	}
	return rules, nil
}

// homePath is where the sandbox's home appears: the user's own home path.
func (e *env) homePath() string {
	if h := e.getenv("HOME"); filepath.IsAbs(h) && h != "/" {
		return filepath.Clean(h)
	}
	if os.Getuid() == 0 {
		return "/root"
	}
	return "/home/" + e.getenv("USER")
}

// sandboxHost is the host side of a running sandbox: its proxy, serving
// the sandbox's socket, and the files it is handed.
type sandboxHost struct {
	name       string
	runtimeDir string
	bundle, ca string
	proxy      *proxy.Proxy
	requests   *audit.Log
	secrets    *secret.FileStore
	registry   *provider.Registry
	listener   net.Listener
	served     chan error
	logFile    *os.File
}

// startHost starts the sandbox's proxy on its Unix socket. The proxy
// knows the sandbox by the socket, so its scoped secrets and rules apply.
func (e *env) startHost(name string, store *sandbox.Store) (*sandboxHost, error) {
	dirs, err := e.state()
	if err != nil {
		return nil, err
	}
	authority, err := e.ca()
	if err != nil {
		return nil, err
	}
	bundle, err := writeBundle(dirs, authority.Bundle)
	if err != nil {
		return nil, err
	}
	secrets, err := e.secrets()
	if err != nil {
		return nil, err
	}
	h := &sandboxHost{name: name, bundle: bundle, ca: authority.CertPath(), secrets: secrets,
		registry: provider.OpenRegistry(dirs.Config), served: make(chan error, 1)}
	ok := false
	defer func() {
		if !ok {
			h.close()
		}
	}()
	if _, err := h.registry.Set(); err != nil {
		return nil, err
	}
	engine, err := e.policyEngine(h.registry)
	if err != nil {
		return nil, err
	}

	// Warnings would draw over a full-screen agent on the terminal; there
	// they go to a log file in the sandbox's directory instead.
	var logTo io.Writer = e.stderr
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		logFile, err := os.OpenFile(filepath.Join(store.Dir(name), "proxy.log"),
			os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		h.logFile = logFile
		logTo = logFile
	}
	logger := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// A request log that cannot be opened costs the log, not the sandbox.
	var recorder proxy.Recorder
	if h.requests, err = audit.Open(audit.DefaultPath(dirs.State), audit.Options{Logger: logger}); err != nil {
		e.warnf("requests are served but not logged: %v", err)
		h.requests = nil
	} else {
		recorder = h.requests
	}
	h.proxy, err = proxy.New(proxy.Config{
		CA: authority, Providers: h.registry.Set, Secrets: secrets,
		Policy: proxyPolicy{engine}, Audit: recorder, Logger: logger,
	})
	if err != nil {
		return nil, err
	}

	h.runtimeDir = store.RuntimeDir(name)
	if err := os.RemoveAll(h.runtimeDir); err != nil {
		return nil, err
	}
	if err := ensurePrivateDir(h.runtimeDir); err != nil {
		return nil, err
	}
	h.listener, err = listenUnixIn(h.runtimeDir, sandbox.ProxySocket)
	if err != nil {
		return nil, err
	}
	go func() { h.served <- h.proxy.Serve(h.listener, proxy.Identity{Sandbox: name}) }()
	ok = true
	return h, nil
}

func (h *sandboxHost) close() {
	if h.proxy != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		h.proxy.Shutdown(ctx)
		cancel()
	}
	if h.listener != nil {
		h.listener.Close()
	}
	if h.requests != nil {
		h.requests.Close()
	}
	if h.secrets != nil {
		h.secrets.Close()
	}
	if h.runtimeDir != "" {
		os.RemoveAll(h.runtimeDir)
	}
	if h.logFile != nil {
		h.logFile.Close()
	}
}

// attach starts the command in the sandbox with this process's terminal
// or standard streams, relays signals and the window size, and returns the
// command's exit code.
func (e *env) attach(runtimeDir string, cmd sandbox.Command, sandboxDone <-chan struct{}) (int, error) {
	stdin, _ := e.stdin.(*os.File)
	stdout, _ := e.stdout.(*os.File)
	stderr, _ := e.stderr.(*os.File)
	if stdin == nil || stdout == nil || stderr == nil {
		return 0, errors.New("cordon run needs real standard streams")
	}

	tty := term.IsTerminal(int(stdin.Fd())) && term.IsTerminal(int(stdout.Fd()))
	var p *sandbox.Process
	var master *os.File
	var err error
	if tty {
		// The agent gets a terminal of the sandbox's own, never this one:
		// a program holding the user's terminal could push keystrokes
		// into the shell that started cordon.
		var rows, cols uint16
		if ws, err := unix.IoctlGetWinsize(int(stdin.Fd()), unix.TIOCGWINSZ); err == nil {
			rows, cols = ws.Row, ws.Col
		}
		p, master, err = sandbox.SpawnTerminal(runtimeDir, cmd, rows, cols)
	} else {
		p, err = sandbox.Spawn(runtimeDir, cmd, [3]*os.File{stdin, stdout, stderr})
	}
	if err != nil {
		return 0, err
	}
	output := make(chan struct{})
	if tty {
		defer master.Close()
		old, err := term.MakeRaw(int(stdin.Fd()))
		if err == nil {
			defer term.Restore(int(stdin.Fd()), old)
		}
		go io.Copy(master, stdin)
		go func() {
			io.Copy(stdout, master)
			close(output)
		}()
	} else {
		close(output)
	}

	sigs := make(chan os.Signal, 8)
	relayed := []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGWINCH,
		syscall.SIGUSR1, syscall.SIGUSR2}
	signal.Notify(sigs, relayed...)
	defer signal.Stop(sigs)
	exited := make(chan struct{})
	var code int
	var waitErr error
	go func() {
		code, waitErr = p.Wait()
		close(exited)
	}()
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGWINCH {
				if master != nil {
					sandbox.CopySize(stdin, master)
				}
				continue
			}
			p.Signal(s.(syscall.Signal))
		case <-exited:
			// Let the last of the output through the terminal first.
			select {
			case <-output:
			case <-time.After(time.Second):
			}
			return code, waitErr
		case <-sandboxDone:
			return 0, errors.New("the sandbox ended unexpectedly")
		}
	}
}
