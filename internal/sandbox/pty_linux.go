package sandbox

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// OpenPTY opens a new pseudo-terminal pair on the host. The sandboxed
// program gets the terminal end, never the user's own terminal: a program
// holding that could push keystrokes into the shell that started cordon.
func OpenPTY() (master, terminal *os.File, err error) {
	return openPTY("/dev/ptmx", "/dev/pts")
}

// openPTY opens a pair from the given multiplexer and its pts directory.
func openPTY(ptmx, pts string) (master, terminal *os.File, err error) {
	m, err := os.OpenFile(ptmx, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening a pseudo-terminal: %w", err)
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlocking the pseudo-terminal: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	t, err := os.OpenFile(fmt.Sprintf("%s/%d", pts, n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("opening the pseudo-terminal: %w", err)
	}
	return m, t, nil
}

// CopySize gives the pseudo-terminal the window size of the user's
// terminal.
func CopySize(from, to *os.File) error {
	ws, err := unix.IoctlGetWinsize(int(from.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return err
	}
	return unix.IoctlSetWinsize(int(to.Fd()), unix.TIOCSWINSZ, ws)
}
