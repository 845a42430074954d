package cli

import (
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/cordon-dev/cordon/internal/agent"
	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/sandbox"
	"github.com/cordon-dev/cordon/internal/state"
)

// Placeholder is what a sandbox sees in a provider's key variables. It is
// not a secret; the proxy replaces it with the stored key.
const Placeholder = "cordon-placeholder-key"

// passedThrough are host variables a sandbox inherits: the terminal and
// locale, nothing that could hold a credential.
var passedThrough = []string{"TERM", "COLORTERM", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "PATH", "SHELL", "USER", "LOGNAME"}

// sandboxEnv builds the environment of programs in a sandbox: proxy and CA
// variables, placeholders for providers with a secret, base URLs for
// registered providers with an API style, then -e values. It also returns
// notes for the user about choices it made.
func (e *env) sandboxEnv(h *sandboxHost, name string, opts runOptions, extra []string) ([]string, []string, error) {
	vars := map[string]string{}
	for _, k := range passedThrough {
		if v := e.getenv(k); v != "" {
			vars[k] = v
		}
	}
	if vars["PATH"] == "" {
		vars["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	vars["HOME"] = e.homePath()
	vars["CORDON_SANDBOX"] = name
	// Agents that refuse some modes as root accept them in a sandbox.
	vars["IS_SANDBOX"] = "1"

	proxyURL := fmt.Sprintf("http://127.0.0.1:%d", sandbox.ProxyPort)
	for _, k := range []string{"HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy"} {
		vars[k] = proxyURL
	}
	vars["NO_PROXY"], vars["no_proxy"] = "localhost,127.0.0.1,::1", "localhost,127.0.0.1,::1"
	for _, k := range []string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "AWS_CA_BUNDLE"} {
		vars[k] = sandbox.InsideCABundle
	}
	vars["NODE_EXTRA_CA_CERTS"] = sandbox.InsideCACert

	set, err := h.registry.Set()
	if err != nil {
		return nil, nil, err
	}
	snap, err := h.secrets.Snapshot()
	if err != nil {
		return nil, nil, err
	}
	hasSecret := func(p *provider.Provider) bool {
		_, ok := snap.Lookup(name, p.Name)
		return ok
	}
	for _, p := range set.All() {
		if !hasSecret(p) {
			continue // the agent's own login, if any, keeps working
		}
		for _, v := range p.Env {
			vars[v] = Placeholder
		}
	}

	var notes []string
	for _, style := range []struct {
		api      provider.API
		flag     string
		chosen   string
		baseVar  string
		keyVar   string
		flagName string
	}{
		{provider.APIOpenAI, "--openai", opts.openai, "OPENAI_BASE_URL", "OPENAI_API_KEY", "openai"},
		{provider.APIAnthropic, "--anthropic", opts.anthropic, "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "anthropic"},
	} {
		var candidates []*provider.Provider
		for _, p := range set.All() {
			if !p.Builtin && p.API == style.api {
				candidates = append(candidates, p)
			}
		}
		var pick *provider.Provider
		if style.chosen != "" {
			for _, p := range candidates {
				if p.Name == style.chosen {
					pick = p
				}
			}
			if pick == nil {
				return nil, nil, usagef("%s %s: no registered provider of that name declares --api %s",
					style.flag, style.chosen, style.flagName)
			}
		} else if len(candidates) > 0 {
			pick = candidates[0]
		}
		if pick == nil {
			continue
		}
		vars[style.baseVar] = pick.BaseURL()
		if hasSecret(pick) {
			vars[style.keyVar] = Placeholder
		}
		if len(candidates) > 1 {
			var others []string
			for _, p := range candidates {
				if p != pick {
					others = append(others, p.Name)
				}
			}
			notes = append(notes, fmt.Sprintf("%s points at %s (%s); also declared: %s (choose with %s)",
				style.baseVar, pick.Name, pick.BaseURL(), strings.Join(others, ", "), style.flag))
		}
	}

	for _, kv := range extra {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out, notes, nil
}

// presetLaunch adds what the agent's preset needs to a sandbox's
// environment and to argv (the program, then the user's arguments):
// variables that neither cordon nor -e set, and arguments before the
// user's. A name that is no preset adds nothing.
func (e *env) presetLaunch(h *sandboxHost, name, agentName string,
	environ, argv []string) ([]string, []string, error) {
	preset, err := agent.Lookup(agentName)
	if err != nil || len(argv) == 0 {
		return environ, argv, nil
	}
	set, err := h.registry.Set()
	if err != nil {
		return nil, nil, err
	}
	snap, err := h.secrets.Snapshot()
	if err != nil {
		return nil, nil, err
	}

	ctx := agent.Context{Args: argv[1:], Env: map[string]string{}}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		ctx.Env[k] = v
	}
	for _, p := range set.All() {
		if p.Builtin || p.API == provider.APINone {
			continue
		}
		ap := agent.Provider{Name: p.Name, BaseURL: p.BaseURL(), API: string(p.API)}
		if _, ok := snap.Lookup(name, p.Name); ok {
			ap.Key = Placeholder
		}
		ctx.Providers = append(ctx.Providers, ap)
	}

	launch := preset.Launch(ctx)
	for k, v := range launch.Env {
		if _, ok := ctx.Env[k]; !ok {
			environ = append(environ, k+"="+v)
		}
	}
	sort.Strings(environ)
	return environ, slices.Concat(argv[:1], launch.Args, argv[1:]), nil
}

// hiddenPaths are the host paths a sandbox must not see: cordon's own
// state, wherever CORDON_HOME or the XDG variables put it.
func (e *env) hiddenPaths(dirs state.Dirs) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range []string{dirs.Config, dirs.Data, dirs.State, dirs.Runtime} {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// ensurePrivateDir creates dir and its parents, owner-only.
func ensurePrivateDir(dir string) error {
	return state.EnsureDir(dir)
}

// listenUnixIn listens on a Unix socket in dir. The path goes through an
// open descriptor of dir, so a deep state directory cannot exceed the
// kernel's limit on socket path length.
func listenUnixIn(dir, name string) (net.Listener, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	l, err := net.Listen("unix", fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), name))
	if err != nil {
		return nil, fmt.Errorf("listening on %s/%s: %w", dir, name, err)
	}
	// The path through the descriptor is gone once it closes; the
	// runtime directory is removed as a whole instead.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	return l, nil
}
