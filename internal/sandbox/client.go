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
	cmd.TTY = false
	p, _, err := spawn(runtimeDir, cmd, stdio[:])
	return p, err
}

// SpawnTerminal starts cmd in the sandbox on a pseudo-terminal of the
// sandbox's own, rows by cols, and returns the terminal's master end.
func SpawnTerminal(runtimeDir string, cmd Command, rows, cols uint16) (*Process, *os.File, error) {
	cmd.TTY, cmd.Rows, cmd.Cols = true, rows, cols
	p, master, err := spawn(runtimeDir, cmd, nil)
	if err == nil && master == nil {
		p.c.uc.Close()
		return nil, nil, errors.New("the sandbox sent no terminal")
	}
	return p, master, err
}

func spawn(runtimeDir string, cmd Command, stdio []*os.File) (*Process, *os.File, error) {
	dir, err := os.OpenFile(runtimeDir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox is not running: %w", err)
	}
	defer dir.Close()
	path := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), ControlSocket)
	uc, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, errors.New("sandbox is not running")
		}
		return nil, nil, fmt.Errorf("reaching the sandbox: %w", err)
	}
	c := &conn{uc: uc}
	if err := c.send(message{Spawn: &cmd}, stdio...); err != nil {
		uc.Close()
		return nil, nil, fmt.Errorf("reaching the sandbox: %w", err)
	}
	m, files, err := c.receive()
	if err != nil {
		uc.Close()
		return nil, nil, fmt.Errorf("reaching the sandbox: %w", err)
	}
	if m.Error != "" {
		closeAll(files)
		uc.Close()
		return nil, nil, errors.New(m.Error)
	}
	var master *os.File
	if len(files) == 1 && cmd.TTY {
		master = files[0]
	} else {
		closeAll(files)
	}
	return &Process{c: c, PID: m.PID}, master, nil
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
