// Package agent knows the programs cordon runs in sandboxes: each preset's
// command, how to tell whether it is installed, and the environment it
// expects.
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
	// Package says how to install the program when it is missing.
	Package string
}

// presets lists the agents, in the order help text shows them.
var presets = []Preset{
	{Name: "shell", Title: "your shell", Program: ""},
}

// Names lists the preset names.
func Names() []string {
	var out []string
	for _, p := range presets {
		out = append(out, p.Name)
	}
	return out
}

// Lookup finds a preset; an unknown name is an error that lists them.
func Lookup(name string) (Preset, error) {
	i := slices.IndexFunc(presets, func(p Preset) bool { return p.Name == name })
	if i < 0 {
		return Preset{}, fmt.Errorf("unknown agent %q; the presets are %s", name, strings.Join(Names(), ", "))
	}
	return presets[i], nil
}

// Command returns the program and arguments that start the agent with the
// user's extra arguments, or an error naming the package that provides a
// missing program. getenv reads the host's environment.
func (p Preset) Command(args []string, getenv func(string) string) ([]string, error) {
	if p.Name == "shell" {
		return append([]string{shellPath(getenv)}, args...), nil
	}
	path, err := exec.LookPath(p.Program)
	if err != nil {
		return nil, fmt.Errorf("%s (%s) is not installed; install it with: %s", p.Program, p.Title, p.Package)
	}
	return append([]string{path}, args...), nil
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
