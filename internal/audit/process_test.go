package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The environment variables that make the test binary a writer process
// for TestConcurrentProcesses.
const (
	childPathEnv = "CORDON_AUDIT_TEST_PATH"
	childNameEnv = "CORDON_AUDIT_TEST_NAME"
)

const (
	processes         = 4
	eventsPerProcess  = 1500
	flushEveryNEvents = 25
)

// Several proxies in several processes write to one log at once: every
// event of every process is stored, once.
func TestConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several processes")
	}
	path := filepath.Join(t.TempDir(), FileName)
	// One process creates the log first, so that the children also race
	// on an existing schema; a second test below races on creating it.
	for _, create := range []bool{true, false} {
		t.Run(fmt.Sprintf("existing=%v", create), func(t *testing.T) {
			path := path + strconv.FormatBool(create)
			if create {
				l := openTest(t, path, Options{})
				l.Close()
			}
			runWriters(t, path)
		})
	}
}

func runWriters(t *testing.T, path string) {
	var cmds []*exec.Cmd
	outputs := make([]bytes.Buffer, processes)
	for i := range processes {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWriterProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), childPathEnv+"="+path, fmt.Sprintf("%s=p%d", childNameEnv, i))
		cmd.Stdout = &outputs[i]
		cmd.Stderr = &outputs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("writer p%d: %v\n%s", i, err, outputs[i].String())
		}
	}

	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	seen := map[string]int{}
	err = r.Each(context.Background(), Filter{}, func(e Event) error {
		seen[e.Sandbox+e.Path]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	missing, repeated := 0, 0
	for i := range processes {
		for j := range eventsPerProcess {
			switch n := seen[fmt.Sprintf("p%d/%d", i, j)]; {
			case n == 0:
				missing++
			case n > 1:
				repeated++
			}
		}
	}
	if missing > 0 || repeated > 0 || len(seen) != processes*eventsPerProcess {
		t.Errorf("%d events missing, %d stored more than once, %d distinct; want %d",
			missing, repeated, len(seen), processes*eventsPerProcess)
	}
}

// TestWriterProcess is one writer of TestConcurrentProcesses, run in a
// process of its own. It does nothing in a normal test run.
func TestWriterProcess(t *testing.T) {
	path := os.Getenv(childPathEnv)
	if path == "" {
		t.Skip("runs as a child of TestConcurrentProcesses")
	}
	name := os.Getenv(childNameEnv)
	l, err := Open(path, Options{BusyTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for j := range eventsPerProcess {
		e := sample(j)
		e.Sandbox, e.Path = name, fmt.Sprintf("/%d", j)
		l.Record(e)
		// Many small transactions interleave with the other writers'.
		if j%flushEveryNEvents == 0 {
			if err := l.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
