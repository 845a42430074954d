package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cordonCmd prepares a cordon process: this test binary in cordon's role.
func cordonCmd(home string, stdin string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CORDON_TEST_AS_CORDON=1", "CORDON_HOME="+home,
		"GORACE=atexit_sleep_ms=0")
	cmd.Stdin = strings.NewReader(stdin)
	return cmd
}

func runCordon(t *testing.T, home, stdin string, args ...string) string {
	t.Helper()
	out, err := cordonCmd(home, stdin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("cordon %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Many processes adding providers, secrets and rules at once lose nothing.
func TestConcurrentWritersLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts many processes")
	}
	home := t.TempDir()
	const workers, each = 6, 4
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*3)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				name := fmt.Sprintf("p%d-%d", w, i)
				steps := [][]string{
					{"provider", "add", "--name", name, "--base-url", "https://" + name + ".example.com/v1"},
					{"secret", "set", name},
					{"policy", "allow", "network", name + ".allowed.example"},
				}
				for _, args := range steps {
					out, err := cordonCmd(home, "sk-"+name+"-0123456789abcdef\n", args...).CombinedOutput()
					if err != nil {
						errs <- fmt.Errorf("cordon %s: %v\n%s", strings.Join(args, " "), err, out)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	var providers []struct {
		Name string `json:"name"`
	}
	json.Unmarshal([]byte(runCordon(t, home, "", "provider", "ls", "--json")), &providers)
	var secrets []struct {
		Service string `json:"service"`
	}
	json.Unmarshal([]byte(runCordon(t, home, "", "secret", "ls", "--json")), &secrets)
	rules := runCordon(t, home, "", "policy", "ls", "--json")
	for w := range workers {
		for i := range each {
			name := fmt.Sprintf("p%d-%d", w, i)
			found := func(list []string) bool {
				for _, n := range list {
					if n == name {
						return true
					}
				}
				return false
			}
			var pn, sn []string
			for _, p := range providers {
				pn = append(pn, p.Name)
			}
			for _, s := range secrets {
				sn = append(sn, s.Service)
			}
			if !found(pn) || !found(sn) || !strings.Contains(rules, name+".allowed.example") {
				t.Errorf("%s lost: provider %v, secret %v, rule %v", name, found(pn), found(sn),
					strings.Contains(rules, name+".allowed.example"))
			}
		}
	}
}

// A writer killed at random moments never leaves a store that cannot be
// read.
func TestKilledWritersLeaveReadableStores(t *testing.T) {
	if testing.Short() {
		t.Skip("starts many processes")
	}
	home := t.TempDir()
	runCordon(t, home, "", "provider", "add", "--name", "llm", "--base-url", "https://llm.example.com")
	runCordon(t, home, "sk-first-0123456789abcdef", "secret", "set", "llm")
	runCordon(t, home, "", "policy", "init", "balanced")

	rng := rand.New(rand.NewPCG(1, 2))
	deadline := time.Now().Add(20 * time.Second)
	for round := 0; round < 40 && time.Now().Before(deadline); round++ {
		var cmd *exec.Cmd
		switch round % 3 {
		case 0:
			cmd = cordonCmd(home, fmt.Sprintf("sk-round-%d-0123456789abcdef", round), "secret", "set", "--force", "llm")
		case 1:
			cmd = cordonCmd(home, "", "provider", "add", "--force", "--name", "other",
				"--base-url", fmt.Sprintf("https://other%d.example.com", round))
		default:
			cmd = cordonCmd(home, "", "policy", "allow", "network", fmt.Sprintf("h%d.example.com", round))
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.IntN(15000)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		for _, args := range [][]string{{"secret", "ls"}, {"provider", "ls"}, {"policy", "ls"}} {
			out, err := cordonCmd(home, "", args...).CombinedOutput()
			if err != nil {
				t.Fatalf("round %d: after a killed writer, cordon %s: %v\n%s", round, strings.Join(args, " "), err, out)
			}
		}
	}
	// A killed writer's temporary file is cleared by the next writer,
	// so they cannot pile up.
	runCordon(t, home, "sk-last-0123456789abcdef", "secret", "set", "--force", "llm")
	runCordon(t, home, "", "provider", "add", "--force", "--name", "other", "--base-url", "https://last.example.com")
	runCordon(t, home, "", "policy", "allow", "network", "last.example.com")
	entries, _ := os.ReadDir(home)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

// A corrupted or truncated store gives a clear error, and is never
// silently replaced.
func TestCorruptedStoresAreNotReplaced(t *testing.T) {
	tests := []struct {
		file    string
		corrupt func([]byte) []byte
		read    []string
		write   []string
		stdin   string
	}{
		{"secrets.age", func(b []byte) []byte { return b[:len(b)/2] },
			[]string{"secret", "ls"}, []string{"secret", "set", "--force", "llm"}, "sk-new-0123456789abcdef"},
		{"secrets.age", func(b []byte) []byte { b[len(b)-5] ^= 0xff; return b },
			[]string{"secret", "ls"}, []string{"secret", "rm", "llm"}, ""},
		{"secrets.key", func(b []byte) []byte { return []byte("AGE-SECRET-KEY-1NOTAKEY\n") },
			[]string{"secret", "ls"}, []string{"secret", "set", "--force", "llm"}, "sk-new-0123456789abcdef"},
		{"providers.json", func(b []byte) []byte { return b[:len(b)/2] },
			[]string{"provider", "ls"}, []string{"provider", "add", "--name", "x", "--base-url", "https://x.example.com"}, ""},
		{"policy.json", func(b []byte) []byte { return append(b, []byte("garbage")...) },
			[]string{"policy", "ls"}, []string{"policy", "allow", "network", "x.example.com"}, ""},
		{"ca-key.pem", func(b []byte) []byte { return b[:40] },
			[]string{"ca", "export"}, []string{"ca", "path"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			home := t.TempDir()
			runCordon(t, home, "", "provider", "add", "--name", "llm", "--base-url", "https://llm.example.com")
			runCordon(t, home, "sk-first-0123456789abcdef", "secret", "set", "llm")
			runCordon(t, home, "", "policy", "allow", "network", "a.example.com")
			runCordon(t, home, "", "ca", "path")

			path := filepath.Join(home, tt.file)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			broken := tt.corrupt(append([]byte(nil), data...))
			if err := os.WriteFile(path, broken, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{tt.read, tt.write} {
				var stderr bytes.Buffer
				cmd := cordonCmd(home, tt.stdin, args...)
				cmd.Stderr = &stderr
				err := cmd.Run()
				if err == nil {
					t.Errorf("cordon %s succeeded on a broken %s", strings.Join(args, " "), tt.file)
					continue
				}
				if code := cmd.ProcessState.ExitCode(); code != 1 {
					t.Errorf("cordon %s: exit %d, want 1", strings.Join(args, " "), code)
				}
				msg := stderr.String()
				if !strings.HasPrefix(msg, "cordon: ") || !strings.Contains(msg, tt.file) {
					t.Errorf("cordon %s: error does not name %s: %q", strings.Join(args, " "), tt.file, msg)
				}
				if strings.Contains(msg, "sk-first") {
					t.Errorf("the secret appears in the error: %q", msg)
				}
			}
			if now, _ := os.ReadFile(path); !bytes.Equal(now, broken) {
				t.Errorf("%s was replaced", tt.file)
			}
		})
	}
}
