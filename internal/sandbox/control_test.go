package sandbox

import (
	"net"
	"os"
	"syscall"
	"testing"
)

// pair returns both ends of a SOCK_SEQPACKET connection.
func pair(t testing.TB) (*conn, *conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ends := make([]*conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "control")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		ends[i] = &conn{uc: c.(*net.UnixConn)}
		t.Cleanup(func() { c.Close() })
	}
	return ends[0], ends[1]
}

func TestControlRoundTrip(t *testing.T) {
	a, b := pair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	cmd := Command{Args: []string{"sh", "-c", "true"}, Env: []string{"A=b"}, Dir: "/work", TTY: true, Rows: 24, Cols: 80}
	if err := a.send(message{Spawn: &cmd}, r, w, w); err != nil {
		t.Fatal(err)
	}
	m, files, err := b.receive()
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(files)
	if m.Spawn == nil || m.Spawn.Dir != "/work" || m.Spawn.Rows != 24 || len(m.Spawn.Args) != 3 || len(files) != 3 {
		t.Fatalf("received %+v with %d descriptors", m, len(files))
	}
	// The descriptors are the pipe's: what goes in one comes out of the
	// other.
	files[1].Write([]byte("x"))
	buf := make([]byte, 1)
	if n, _ := r.Read(buf); n != 1 || buf[0] != 'x' {
		t.Error("the passed descriptor is not the pipe")
	}
}

func TestControlRefusesOversizedMessages(t *testing.T) {
	a, _ := pair(t)
	huge := make([]string, 0, 1)
	huge = append(huge, string(make([]byte, maxMessage)))
	if err := a.send(message{Spawn: &Command{Args: []string{"x"}, Env: huge}}); err == nil {
		t.Error("an oversized message was sent")
	}
}

// FuzzControlMessage feeds init's side arbitrary packets: it must decode
// or refuse them, never panic.
func FuzzControlMessage(f *testing.F) {
	f.Add([]byte(`{"spawn":{"args":["sh"],"env":[],"dir":"/","tty":false}}`))
	f.Add([]byte(`{"signal":15}`))
	f.Add([]byte(`{"exit":0}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, packet []byte) {
		if len(packet) == 0 || len(packet) > 4096 {
			return
		}
		a, b := pair(t)
		if _, err := a.uc.Write(packet); err != nil {
			return
		}
		m, files, err := b.receive()
		closeAll(files)
		if err != nil {
			return
		}
		if m.Spawn != nil && m.Spawn.Args == nil && m.Spawn.Path == "" {
			// A spawn without a program is refused by serveSpawn; decoding
			// it is fine.
			return
		}
	})
}
