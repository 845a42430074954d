package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the test binary stand in for the cordon binary, so that the
// scripts under testdata/script run it end to end as a user would.
func TestMain(m *testing.M) {
	// Go tests start cordon processes by running this binary with
	// CORDON_TEST_AS_CORDON set.
	if os.Getenv("CORDON_TEST_AS_CORDON") == "1" {
		os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	testscript.Main(m, map[string]func(){
		"cordon": func() { os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			setScriptEnv(env)
			return nil
		},
		Condition: scriptCondition,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"statesnap":  cmdStateSnap,
			"mode":       cmdMode,
			"upstream":   cmdUpstream,
			"waitfor":    cmdWaitFor,
			"loadenv":    cmdLoadEnv,
			"demoserver": cmdDemoServer,
			"demoseen":   cmdDemoSeen,
		},
	})
}

// setScriptEnv gives a script a cordon home of its own in its work
// directory.
func setScriptEnv(env *testscript.Env) {
	env.Setenv("CORDON_HOME", filepath.Join(env.WorkDir, "cordon-home"))
	// Under the race detector each cordon process (and each sandbox's
	// init) would otherwise linger a second as it exits.
	env.Setenv("GORACE", "atexit_sleep_ms=0")
}

// scriptCondition answers the scripts' [root] condition.
func scriptCondition(cond string) (bool, error) {
	if cond == "root" {
		return os.Geteuid() == 0, nil
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}

// cmdStateSnap records a digest of every file under CORDON_HOME
// ("statesnap save NAME") or checks that nothing changed since
// ("statesnap same NAME"), which is how the scripts prove that bad input
// wrote nothing.
func cmdStateSnap(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || args[0] != "save" && args[0] != "same" {
		ts.Fatalf("usage: statesnap save|same NAME")
	}
	digest := stateDigest(ts, ts.Getenv("CORDON_HOME"))
	file := filepath.Join(ts.Getenv("WORK"), ".statesnap-"+args[1])
	if args[0] == "save" {
		ts.Check(os.WriteFile(file, []byte(digest), 0o600))
		return
	}
	saved, err := os.ReadFile(file)
	ts.Check(err)
	same := string(saved) == digest
	if same == neg {
		ts.Fatalf("state directory changed=%v, want changed=%v\nbefore:\n%s\nafter:\n%s", !same, neg, saved, digest)
	}
}

func stateDigest(ts *testscript.TestScript, root string) string {
	var lines []string
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			ts.Fatalf("walking %s: %v", path, err)
		}
		rel, _ := filepath.Rel(root, path)
		info, err := d.Info()
		ts.Check(err)
		line := fmt.Sprintf("%s %v", rel, info.Mode())
		if d.Type().IsRegular() && !strings.HasSuffix(path, ".lock") {
			data, err := os.ReadFile(path)
			ts.Check(err)
			sum := sha256.Sum256(data)
			line += " " + hex.EncodeToString(sum[:8])
		}
		lines = append(lines, line)
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// cmdMode checks a file's permission bits: "mode 0600 FILE".
func cmdMode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: mode PERM FILE")
	}
	info, err := os.Stat(ts.MkAbs(args[1]))
	ts.Check(err)
	got := fmt.Sprintf("%04o", info.Mode().Perm())
	if (got == args[0]) == neg {
		ts.Fatalf("%s has mode %s, want %s", args[1], got, args[0])
	}
}
