// Package cli builds cordon's command tree. Each file holds one command
// group; this one holds the root command, the shared environment the
// commands run in, and the mapping from errors to exit codes.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cordon-dev/cordon/internal/demo"
	"github.com/cordon-dev/cordon/internal/sandbox"
	"github.com/cordon-dev/cordon/internal/state"
)

// Exit codes. Bad input exits 2 and runtime failures 1; `run` passes the
// agent's own code through.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks an error caused by the user's input: a malformed flag or
// argument, an unknown name. It exits 2. hint, when set, is printed on a
// second line as the obvious fix.
type usageError struct {
	err  error
	hint string
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef formats a usage error.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// withHint attaches a hint line to err, keeping its exit code.
func withHint(err error, hint string) error {
	var u *usageError
	if errors.As(err, &u) {
		return &usageError{err: u.err, hint: hint}
	}
	return &hintError{err: err, hint: hint}
}

// hintError is a runtime failure with a suggested fix.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

// exitError carries an exit code chosen by a command (for example the
// sandboxed agent's own), with nothing to print.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// env is what every command runs with: its streams and where state lives.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	dirs    state.Dirs
	dirsErr error
	loaded  bool
}

// state resolves and creates cordon's directories on first use, so that
// commands that do not need them (version, completion) work without HOME.
func (e *env) state() (state.Dirs, error) {
	if !e.loaded {
		e.loaded = true
		e.dirs, e.dirsErr = state.Resolve()
		if e.dirsErr == nil {
			e.dirsErr = e.dirs.Ensure()
		}
	}
	return e.dirs, e.dirsErr
}

// Main runs cordon with args (without the program name) and returns the
// process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == sandbox.InitArg {
		sandbox.RunInit() // does not return
	}
	if len(args) == 2 && args[0] == demo.ClientArg {
		if err := demo.RunClient(stdout, args[1]); err != nil {
			fmt.Fprintf(stderr, "cordon demo client: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)

	err := root.Execute()
	if err == nil {
		return exitOK
	}
	err = classifyCobraError(err)
	var exit *exitError
	if errors.As(err, &exit) {
		return exit.code
	}

	fmt.Fprintf(stderr, "cordon: %s\n", shorten(oneLine(err.Error())))
	var u *usageError
	var h *hintError
	switch {
	case errors.As(err, &u):
		if u.hint != "" {
			fmt.Fprintf(stderr, "hint: %s\n", u.hint)
		}
		return exitUsage
	case errors.As(err, &h):
		fmt.Fprintf(stderr, "hint: %s\n", h.hint)
	}
	return exitFailure
}

// classifyCobraError marks the errors cobra itself produces for bad
// command lines (an unknown command, a missing required flag, conflicting
// flags) as usage errors. cobra returns them as plain errors with no type
// to test, so their fixed message prefixes are the only handle.
func classifyCobraError(err error) error {
	var u *usageError
	if errors.As(err, &u) {
		return err
	}
	msg := err.Error()
	for _, prefix := range []string{
		"unknown command ", "unknown flag", "unknown shorthand flag",
		"required flag(s) ", "if any flags in the group ", "invalid argument ",
		"flag needs an argument",
	} {
		if strings.HasPrefix(msg, prefix) {
			return &usageError{err: err}
		}
	}
	return err
}

// maxMessage bounds an error message: a huge value echoed back from the
// command line is cut in the middle.
const maxMessage = 400

func shorten(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	head, tail := s[:maxMessage-100], s[len(s)-80:]
	return strings.ToValidUTF8(head, "") + fmt.Sprintf("…(%d bytes)…", len(s)-len(head)-len(tail)) +
		strings.ToValidUTF8(tail, "")
}

// oneLine keeps an error message on a single line, so that a value echoed
// back from bad input cannot forge further lines of output.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "cordon",
		Short: "Run AI coding agents in a sandbox that never holds your API keys",
		Long: `cordon runs an AI coding agent in a Linux sandbox whose only way out is a
proxy on the host. The proxy enforces a network policy and injects your
stored API credentials into outbound requests, so the real keys never exist
inside the sandbox.

Register any HTTP API as a provider, store its key once, and run:

  cordon provider add --name my-llm --base-url https://llm.example.com/v1
  cordon secret set my-llm
  cordon run opencode ~/src/project`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// No cordon flag means anything when empty; an empty value is a
	// mistake (an unset shell variable, usually), not "use the default".
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		var empty string
		cmd.Flags().Visit(func(f *pflag.Flag) {
			switch {
			case empty != "":
			case f.Value.Type() == "string" && f.Value.String() == "",
				f.Value.Type() == "stringSlice" && f.Value.String() == "[]":
				empty = f.Name
			}
		})
		if empty != "" {
			return usagef("--%s is empty", empty)
		}
		return nil
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{err: err}
	})
	root.AddCommand(
		newVersionCmd(e),
		newCACmd(e),
		newProviderCmd(e),
		newSecretCmd(e),
		newProxyCmd(e),
		newRunCmd(e),
		newExecCmd(e),
		newLsCmd(e),
		newStopCmd(e),
		newRmCmd(e),
		newDemoCmd(e),
		newPolicyCmd(e),
	)
	return root
}

// noArgs, exactArgs and rangeArgs are cobra's argument checks with their
// errors marked as bad input.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args[0])
	}
	return nil
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %s", cmd.CommandPath(), what)
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("%s needs %s", cmd.CommandPath(), what)
		}
		return nil
	}
}
