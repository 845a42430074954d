package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestEscapeScripts runs the attacks from inside a sandbox, in
// testdata/escape: a program in the sandbox trying to read credentials or
// reach the network by any way but cordon's proxy.
func TestEscapeScripts(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("sandboxes are Linux only")
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/escape",
		Setup: func(env *testscript.Env) error {
			setScriptEnv(env)
			// A state directory where the sandbox would see it were it not
			// hidden: outside the directories every sandbox gets fresh.
			visible, err := os.MkdirTemp("/var/tmp", "cordon-escape-")
			if err != nil {
				return err
			}
			env.Defer(func() { os.RemoveAll(visible) })
			env.Setenv("VISIBLE_HOME", visible)
			fixture, err := hostFilesFixture()
			if err != nil {
				return err
			}
			env.Defer(func() { os.RemoveAll(fixture) })
			env.Setenv("HOST_FILES", fixture)
			return nil
		},
		Condition: scriptCondition,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"upstream": cmdUpstream,
			"waitfor":  cmdWaitFor,
			"trap":     cmdTrap,
		},
	})
}

// cmdTrap listens on the host where nothing inside a sandbox may reach,
// and notes every connection or packet that arrives in $WORK/NAME.hits:
//
//	trap NAME tcp|tcp6|udp|abstract
//
// tcp and udp listen on 127.0.0.1, tcp6 on [::1]; the port goes in
// $NAME_PORT. abstract listens on an abstract Unix socket whose name (no
// leading "@") goes in $NAME_ADDR.
func cmdTrap(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: trap NAME tcp|tcp6|udp|abstract")
	}
	name, kind := args[0], args[1]
	hits := filepath.Join(ts.Getenv("WORK"), name+".hits")
	var mu sync.Mutex
	hit := func(what string) {
		mu.Lock()
		defer mu.Unlock()
		f, err := os.OpenFile(hits, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(f, what)
			f.Close()
		}
	}
	variable := strings.ToUpper(name)

	if kind == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		ts.Check(err)
		ts.Defer(func() { pc.Close() })
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				hit(fmt.Sprintf("packet of %d bytes from %v", n, from))
			}
		}()
		ts.Setenv(variable+"_PORT", strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port))
		return
	}

	var l net.Listener
	var err error
	switch kind {
	case "tcp":
		l, err = net.Listen("tcp", "127.0.0.1:0")
	case "tcp6":
		l, err = net.Listen("tcp6", "[::1]:0")
	case "abstract":
		addr := fmt.Sprintf("cordon-trap-%d-%s", os.Getpid(), name)
		l, err = net.Listen("unix", "@"+addr)
		ts.Setenv(variable+"_ADDR", addr)
	default:
		ts.Fatalf("unknown trap kind %q", kind)
	}
	ts.Check(err)
	ts.Defer(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			hit(fmt.Sprintf("connection from %v", c.RemoteAddr()))
			c.Close()
		}
	}()
	if tcp, ok := l.Addr().(*net.TCPAddr); ok {
		ts.Setenv(variable+"_PORT", strconv.Itoa(tcp.Port))
	}
}

// hostFilesFixture makes, in /var/tmp, files as a host keeps them: some
// every user may read, some only their owner. hostfiles.txtar reads them
// from inside a sandbox.
func hostFilesFixture() (string, error) {
	dir, err := os.MkdirTemp("/var/tmp", "cordon-hostfiles-")
	if err != nil {
		return "", err
	}
	files := []struct {
		name    string
		mode    os.FileMode
		content string
	}{
		{"host.key", 0o600, "host-private-key-material"},
		{"group.conf", 0o640, "group-private-setting"},
		{"public.txt", 0o644, "public"},
		{"lock", 0o600, ""},
		{"closed/inside", 0o644, "under-a-closed-directory"},
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(path, []byte(f.content), f.mode); err != nil {
			return "", err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "closed"), 0o700); err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o755)
}
