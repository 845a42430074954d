package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cordon-dev/cordon/internal/demo"
)

// cmdDemoServer starts the demo's OpenAI-compatible model server:
//
//	demoserver [-listen=ADDR] NAME HOST
//
// Its CA goes to $WORK/NAME-ca.pem and its port to $NAME_PORT. When the
// script ends, $WORK/NAME.auth holds the Authorization header of each
// chat completion it served, one per line.
func cmdDemoServer(ts *testscript.TestScript, neg bool, args []string) {
	addr := "127.0.0.1:0"
	if len(args) > 0 && strings.HasPrefix(args[0], "-listen=") {
		addr = strings.TrimPrefix(args[0], "-listen=")
		args = args[1:]
	}
	if neg || len(args) != 2 {
		ts.Fatalf("usage: demoserver [-listen=ADDR] NAME HOST")
	}
	name, host := args[0], args[1]
	s, err := demo.StartServerOn(host, addr)
	ts.Check(err)
	work := ts.Getenv("WORK")
	ts.Check(os.WriteFile(filepath.Join(work, name+"-ca.pem"), s.CAPEM, 0o644))
	_, port, _ := net.SplitHostPort(s.Addr)
	ts.Setenv(strings.ToUpper(name)+"_PORT", port)
	ts.Defer(func() { s.Close() })
	// The requests are written out on demand by "demoseen".
	demoServersMu.Lock()
	demoServers[ts] = append(demoServers[ts], namedServer{name, s})
	demoServersMu.Unlock()
}

type namedServer struct {
	name string
	s    *demo.Server
}

// demoServers are the servers each running script started.
var (
	demoServersMu sync.Mutex
	demoServers   = map[*testscript.TestScript][]namedServer{}
)

// cmdDemoSeen writes what a demo server received so far to
// $WORK/NAME.seen: "METHOD PATH AUTHORIZATION" per line.
func cmdDemoSeen(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: demoseen NAME")
	}
	demoServersMu.Lock()
	servers := demoServers[ts]
	demoServersMu.Unlock()
	for _, ns := range servers {
		if ns.name != args[0] {
			continue
		}
		var b strings.Builder
		for _, r := range ns.s.Requests() {
			fmt.Fprintf(&b, "%s %s %s\n", r.Method, r.Path, r.Authorization)
		}
		ts.Check(os.WriteFile(filepath.Join(ts.Getenv("WORK"), args[0]+".seen"), []byte(b.String()), 0o644))
		return
	}
	ts.Fatalf("no demo server %s", args[0])
}
