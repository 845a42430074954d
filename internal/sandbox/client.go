//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Process is a program started in a sandbox.
type Process struct {
	c   *conn
	PID int // in the sandbox's PID namespace
}

// Spawn starts cmd in the sandbox whose runtime directory is runtimeDir,
// with stdio as its standard input, output and error.
func Spawn(runtimeDir string, cmd Command, stdio [3]*os.File) (*Process, error) {
	dir, err := os.OpenFile(runtimeDir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox is not running: %w", err)
	}
	defer dir.Close()
	path := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), ControlSocket)
	uc, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, errors.New("sandbox is not running")
		}
		return nil, fmt.Errorf("reaching the sandbox: %w", err)
	}
	c := &conn{uc: uc}
	if err := c.send(message{Spawn: &cmd}, stdio[0], stdio[1], stdio[2]); err != nil {
		uc.Close()
		return nil, fmt.Errorf("reaching the sandbox: %w", err)
	}
	m, files, err := c.receive()
	closeAll(files)
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("reaching the sandbox: %w", err)
	}
	if m.Error != "" {
		uc.Close()
		return nil, errors.New(m.Error)
	}
	return &Process{c: c, PID: m.PID}, nil
}

// Signal sends sig to the process's group.
func (p *Process) Signal(sig syscall.Signal) error {
	return p.c.send(message{Signal: int(sig)})
}

// Wait returns the process's exit code: its status, or 128 plus the
// signal that ended it.
func (p *Process) Wait() (int, error) {
	defer p.c.uc.Close()
	for {
		m, files, err := p.c.receive()
		closeAll(files)
		if err != nil {
			return -1, fmt.Errorf("lost the sandbox: %w", err)
		}
		if m.Exit != nil {
			return *m.Exit, nil
		}
	}
}

// RuntimeDirFor returns a sandbox's runtime directory under root.
func RuntimeDirFor(root, name string) string {
	return filepath.Join(root, "sandboxes", name)
}
