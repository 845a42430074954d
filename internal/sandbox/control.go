package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// The control protocol runs between a host process (cordon run or exec)
// and the sandbox's init over a Unix SOCK_SEQPACKET socket, one JSON
// message per packet. The host sends a spawn request carrying the
// command's three standard streams as file descriptors; init answers with
// the process ID, relays the signals the host sends, and reports the exit
// status when the process ends.

// Command is a program to start inside a sandbox.
type Command struct {
	// Path is the program to run; empty means Args[0] looked up in the
	// PATH of Env.
	Path string   `json:"path,omitempty"`
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
	// TTY asks init for a pseudo-terminal of the sandbox's own, which
	// becomes the process's controlling terminal and standard streams;
	// its other end comes back to the host. Rows and Cols are its size.
	TTY  bool   `json:"tty"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
}

// message is one packet of the protocol, in either direction.
type message struct {
	Spawn  *Command `json:"spawn,omitempty"`
	Signal int      `json:"signal,omitempty"`
	PID    int      `json:"pid,omitempty"`
	Exit   *int     `json:"exit,omitempty"`
	Error  string   `json:"error,omitempty"`
}

// maxMessage bounds one packet. A spawn request holds an environment,
// which can be large but not unbounded.
const maxMessage = 256 << 10

// conn is one end of the protocol.
type conn struct {
	uc *net.UnixConn
}

func (c *conn) send(m message, files ...*os.File) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(data) > maxMessage {
		return errors.New("control message too large (is the environment huge?)")
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = syscall.UnixRights(fds...)
	}
	_, _, err = c.uc.WriteMsgUnix(data, oob, nil)
	return err
}

// receive reads one message and the descriptors that came with it.
func (c *conn) receive() (message, []*os.File, error) {
	var m message
	buf := make([]byte, maxMessage)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	n, oobn, flags, _, err := c.uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return m, nil, err
	}
	files, err := parseRights(oob[:oobn])
	if err != nil {
		return m, nil, err
	}
	if flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0 {
		closeAll(files)
		return m, nil, errors.New("control protocol: message truncated")
	}
	if n == 0 {
		closeAll(files)
		return m, nil, errClosedPeer
	}
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		closeAll(files)
		return m, nil, fmt.Errorf("control protocol: %w", err)
	}
	return m, files, nil
}

var errClosedPeer = errors.New("control connection closed")

func parseRights(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for _, msg := range msgs {
		fds, err := syscall.ParseUnixRights(&msg)
		if err != nil {
			closeAll(files)
			return nil, err
		}
		for _, fd := range fds {
			syscall.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "passed"))
		}
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
