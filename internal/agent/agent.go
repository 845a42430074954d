// Package agent knows the programs cordon runs in sandboxes: each preset's
// command, the package that provides it, the providers it talks to, and
// what it needs beyond cordon's own proxy, CA and key variables.
package agent

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// Preset is an agent cordon knows how to run.
type Preset struct {
	Name string
	// Title is the agent's name for people.
	Title string
	// Program is the command to run, found in PATH. For the shell preset
	// it is chosen at run time (see Command).
	Program string
	// Package is the npm package that provides Program; empty for the
	// shell.
	Package string
	// Providers are the built-in providers the agent talks to when it is
	// given their keys, by their names in cordon's catalog.
	Providers []string

	// launch adds the preset's variables and arguments; nil adds nothing.
	launch func(Context) Launch
}

// Context is what a preset may look at to prepare the agent.
type Context struct {
	// Args are the user's arguments to the agent.
	Args []string
	// Env is the environment cordon built for the sandbox: proxy and CA
	// variables, key placeholders and base URLs.
	Env map[string]string
	// Providers are the registered providers that declare an API style,
	// in the order cordon lists them.
	Providers []Provider
}

// Provider is a registered provider as an agent's configuration needs it.
type Provider struct {
	Name    string
	BaseURL string
	// API is the style it speaks: "openai" or "anthropic".
	API string
	// Key is what the agent should send as the key: the placeholder when
	// cordon holds a secret for the provider, empty when it holds none.
	// It is never a real key.
	Key string
}

// Launch is what a preset adds to cordon's own setup of the agent.
type Launch struct {
	// Env holds variables to set. They never replace a variable cordon or
	// the user already set.
	Env map[string]string
	// Args go between the program and the user's arguments.
	Args []string
}

// presets lists the agents, in the order help text shows them.
var presets = []Preset{
	{Name: "shell", Title: "your shell"},
	{
		Name: "opencode", Title: "opencode", Program: "opencode", Package: "opencode-ai",
		Providers: []string{"openai", "anthropic", "google", "github", "groq", "mistral", "xai",
			"openrouter", "deepseek", "together", "fireworks", "cerebras", "huggingface"},
		launch: opencodeLaunch,
	},
	{
		Name: "claude", Title: "Claude Code", Program: "claude", Package: "@anthropic-ai/claude-code",
		Providers: []string{"anthropic"},
		launch:    claudeLaunch,
	},
	{
		Name: "codex", Title: "Codex CLI", Program: "codex", Package: "@openai/codex",
		Providers: []string{"openai"},
		launch:    codexLaunch,
	},
	{
		Name: "gemini", Title: "Gemini CLI", Program: "gemini", Package: "@google/gemini-cli",
		Providers: []string{"google"},
	},
}

// Names lists the preset names.
func Names() []string {
	var out []string
	for _, p := range presets {
		out = append(out, p.Name)
	}
	return out
}

// Presets returns every preset, in the order help text shows them.
func Presets() []Preset {
	return slices.Clone(presets)
}

// Lookup finds a preset; an unknown name is an error that lists them.
func Lookup(name string) (Preset, error) {
	i := slices.IndexFunc(presets, func(p Preset) bool { return p.Name == name })
	if i < 0 {
		if len(name) > 40 {
			name = name[:40] + "..."
		}
		return Preset{}, fmt.Errorf("unknown agent %q; the presets are %s", name, strings.Join(Names(), ", "))
	}
	return presets[i], nil
}

// Command returns the program and arguments that start the agent with the
// user's extra arguments, or an error naming the package that provides a
// missing program. getenv reads the host's environment.
//
// The program is looked up in the host's PATH, which the sandbox shares;
// a program installed only inside a sandbox's own layer is not found.
func (p Preset) Command(args []string, getenv func(string) string) ([]string, error) {
	if p.Program == "" {
		return append([]string{shellPath(getenv)}, args...), nil
	}
	path, err := exec.LookPath(p.Program)
	if err != nil {
		return nil, fmt.Errorf("%s is not installed; install it with: npm install -g %s", p.Program, p.Package)
	}
	return append([]string{path}, args...), nil
}

// Launch returns what the preset adds to the agent's environment and
// arguments. It reads nothing but ctx.
func (p Preset) Launch(ctx Context) Launch {
	if p.launch == nil {
		return Launch{}
	}
	return p.launch(ctx)
}

// shellPath picks the user's shell, then bash, then sh.
func shellPath(getenv func(string) string) string {
	if sh := getenv("SHELL"); strings.HasPrefix(sh, "/") {
		if info, err := os.Stat(sh); err == nil && !info.IsDir() {
			return sh
		}
	}
	for _, sh := range []string{"/bin/bash", "/usr/bin/bash", "/bin/sh"} {
		if _, err := os.Stat(sh); err == nil {
			return sh
		}
	}
	return "/bin/sh"
}
