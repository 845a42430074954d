//go:build !linux

package sandbox

import "os"

// Start is not available outside Linux.
func Start(spec Spec) (*Sandbox, error) { return nil, ErrUnsupported }

// Sandbox is a running sandbox; it never exists outside Linux.
type Sandbox struct{}

// Done is never closed.
func (s *Sandbox) Done() <-chan struct{} { return nil }

// Kill does nothing.
func (s *Sandbox) Kill() {}

// RunInit exits: there is no sandbox to be init of.
func RunInit() { os.Exit(1) }

// Process is a program in a sandbox; it never exists outside Linux.
type Process struct{ PID int }

// Spawn is not available outside Linux.
func Spawn(runtimeDir string, cmd Command, stdio [3]*os.File) (*Process, error) {
	return nil, ErrUnsupported
}

// SpawnTerminal is not available outside Linux.
func SpawnTerminal(runtimeDir string, cmd Command, rows, cols uint16) (*Process, *os.File, error) {
	return nil, nil, ErrUnsupported
}
