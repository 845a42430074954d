package policy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cordon-dev/cordon/internal/state"
)

func TestStoreDefault(t *testing.T) {
	s := OpenStore(t.TempDir())
	p, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if p.Preset != Balanced || p.Chosen || len(p.Rules) != 0 {
		t.Errorf("default policy = %+v", p)
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Error("Load created the file")
	}
}

func TestStoreAddRemove(t *testing.T) {
	s := OpenStore(t.TempDir())
	res, err := s.Add(rule(t, "allow Example.COM."), rule(t, "deny **.evil.example @a"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || len(res.Added) != 2 || len(res.Existing) != 0 {
		t.Fatalf("first Add = %+v", res)
	}
	idPattern := regexp.MustCompile(`^[0-9a-f]{8}$`)
	for _, r := range res.Added {
		if !idPattern.MatchString(r.ID) || r.Created.IsZero() {
			t.Errorf("added rule %+v lacks an ID or time", r)
		}
	}
	if res.Added[0].Host != "example.com" {
		t.Errorf("host stored as %q", res.Added[0].Host)
	}

	// The same rule again is not duplicated; the file is left alone.
	before, _ := os.ReadFile(s.Path())
	res2, err := s.Add(rule(t, "allow example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if res2.Created || len(res2.Added) != 0 || len(res2.Existing) != 1 || res2.Existing[0].ID != res.Added[0].ID {
		t.Errorf("second Add = %+v", res2)
	}
	if after, _ := os.ReadFile(s.Path()); !bytes.Equal(before, after) {
		t.Error("adding an existing rule rewrote the file")
	}

	p, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !p.Chosen || p.Preset != Balanced {
		t.Errorf("after Add: %+v", p)
	}
	if diff := cmp.Diff(res.Added, p.Rules); diff != "" {
		t.Errorf("stored rules (-added +loaded):\n%s", diff)
	}

	// Removal by host is per scope.
	evil, _ := ParseHostPattern("**.evil.example")
	if _, err := s.RemoveHosts("", []HostPattern{evil}); !errors.Is(err, ErrNoRule) ||
		!strings.Contains(err.Error(), "sandbox a") {
		t.Errorf("RemoveHosts in the wrong scope: %v", err)
	}
	removed, err := s.RemoveHosts("a", []HostPattern{evil})
	if err != nil || len(removed) != 1 || removed[0].ID != res.Added[1].ID {
		t.Errorf("RemoveHosts = %+v, %v", removed, err)
	}

	// Removal by ID is all or nothing.
	if _, err := s.RemoveIDs(res.Added[0].ID, "nosuch"); !errors.Is(err, ErrNoRule) {
		t.Errorf("RemoveIDs with an unknown ID: %v", err)
	}
	if p, _ := s.Load(); len(p.Rules) != 1 {
		t.Errorf("a failed removal changed the rules: %+v", p.Rules)
	}
	if removed, err := s.RemoveIDs(res.Added[0].ID); err != nil || len(removed) != 1 {
		t.Errorf("RemoveIDs = %+v, %v", removed, err)
	}

	npm, _ := ParseHostPattern("registry.npmjs.org")
	if _, err := s.RemoveHosts("", []HostPattern{npm}); err == nil || !strings.Contains(err.Error(), "balanced preset") {
		t.Errorf("removing a preset host: %v", err)
	}
}

func TestStoreRemoveWithoutFile(t *testing.T) {
	s := OpenStore(t.TempDir())
	if _, err := s.RemoveIDs("abcd1234"); !errors.Is(err, ErrNoRule) {
		t.Errorf("RemoveIDs: %v", err)
	}
	h, _ := ParseHostPattern("example.com")
	if _, err := s.RemoveHosts("", []HostPattern{h}); !errors.Is(err, ErrNoRule) {
		t.Errorf("RemoveHosts: %v", err)
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Error("a failed removal created the file")
	}
}

func TestStoreInit(t *testing.T) {
	s := OpenStore(t.TempDir())
	res, err := s.Init(DenyAll, false)
	if err != nil || res.Existed || res.Previous != Balanced {
		t.Fatalf("Init = %+v, %v", res, err)
	}
	if _, err := s.Add(rule(t, "allow example.com")); err != nil {
		t.Fatal(err)
	}
	res, err = s.Init(AllowAll, false)
	if err != nil || !res.Existed || res.Previous != DenyAll || res.Kept != 1 {
		t.Errorf("Init keeping rules = %+v, %v", res, err)
	}
	if p, _ := s.Load(); p.Preset != AllowAll || len(p.Rules) != 1 {
		t.Errorf("after Init: %+v", p)
	}
	res, err = s.Init(Balanced, true)
	if err != nil || res.Removed != 1 || res.Kept != 0 {
		t.Errorf("Init resetting = %+v, %v", res, err)
	}
	if p, _ := s.Load(); p.Preset != Balanced || len(p.Rules) != 0 {
		t.Errorf("after reset: %+v", p)
	}
	if _, err := s.Init("everything", false); err == nil {
		t.Error("Init with an unknown preset succeeded")
	}
}

func TestStoreFile(t *testing.T) {
	dir := t.TempDir()
	s := OpenStore(dir)
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, FileName), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, content, wantErr string
	}{
		{"valid", `{"version": 1, "preset": "deny-all", "rules": [
			{"id": "a1", "action": "allow", "host": "Example.COM", "method": "get", "path": "/v1/"}]}`, ""},
		{"no rules", `{"version": 1, "preset": "balanced"}`, ""},
		{"unknown field", `{"version": 1, "preset": "balanced", "rulez": []}`, "unknown field"},
		{"unknown rule field", `{"version": 1, "preset": "balanced", "rules": [{"id": "a", "action": "allow", "host": "x.example", "port": 1}]}`, "unknown field"},
		{"no version", `{"preset": "balanced"}`, "no \"version\""},
		{"future version", `{"version": 2, "preset": "balanced"}`, "version 2"},
		{"no preset", `{"version": 1}`, "no \"preset\""},
		{"bad preset", `{"version": 1, "preset": "open"}`, "unknown preset"},
		{"bad action", `{"version": 1, "preset": "balanced", "rules": [{"id": "a", "action": "permit", "host": "x.example"}]}`, "unknown action"},
		{"bad host", `{"version": 1, "preset": "balanced", "rules": [{"id": "a", "action": "allow", "host": "x..example"}]}`, "rule a"},
		{"no id", `{"version": 1, "preset": "balanced", "rules": [{"action": "allow", "host": "x.example"}]}`, "no \"id\""},
		{"bad id", `{"version": 1, "preset": "balanced", "rules": [{"id": "A B", "action": "allow", "host": "x.example"}]}`, "ID \"A B\""},
		{"duplicate id", `{"version": 1, "preset": "balanced", "rules": [{"id": "a", "action": "allow", "host": "x.example"},
			{"id": "a", "action": "deny", "host": "y.example"}]}`, "used twice"},
		{"bypass with path", `{"version": 1, "preset": "balanced", "rules": [{"id": "a", "action": "bypass", "host": "x.example", "path": "/x"}]}`, "no method or path"},
		{"bad sandbox", `{"version": 1, "preset": "balanced", "rules": [{"id": "a", "action": "allow", "host": "x.example", "sandbox": "A/B"}]}`, "sandbox name"},
		{"syntax", "{\"version\": 1,\n\"preset\": }", "line 2"},
		{"trailing", `{"version": 1, "preset": "balanced"} {}`, "after top-level value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			write(tt.content)
			p, err := s.Load()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Load = %+v, %v; want an error with %q", p, err, tt.wantErr)
			}
			// A file that cannot be read is never taken for an empty
			// policy by a change either.
			if _, err := s.Add(rule(t, "allow z.example")); err == nil {
				t.Error("Add over a broken file succeeded")
			}
		})
	}

	// Hand-written values are read in canonical form.
	write(`{"version": 1, "preset": "deny-all", "rules": [
		{"id": "a1", "action": "allow", "host": "Example.COM.", "method": "get", "path": "/v1/"}]}`)
	p, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := Rule{ID: "a1", Action: Allow, Host: "example.com", Method: "GET", Path: "/v1"}
	if diff := cmp.Diff(want, p.Rules[0]); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Load re-reads the file after another process changed it, and only then.
func TestStoreReload(t *testing.T) {
	dir := t.TempDir()
	a, b := OpenStore(dir), OpenStore(dir)
	if _, err := a.Add(rule(t, "allow one.example")); err != nil {
		t.Fatal(err)
	}
	p1, err := b.Load()
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := b.Load(); p != p1 {
		t.Error("Load re-read an unchanged file")
	}
	if _, err := a.Add(rule(t, "allow two.example")); err != nil {
		t.Fatal(err)
	}
	p2, err := b.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.Rules) != 2 {
		t.Errorf("after a change elsewhere: %d rules", len(p2.Rules))
	}
	// A hand edit bumps no change counter; it is seen within the
	// recheck interval.
	if err := os.Remove(a.Path()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * state.RecheckInterval)
	for {
		p, _ := b.Load()
		if !p.Chosen && len(p.Rules) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("removal not seen after %v: %+v", 3*state.RecheckInterval, p)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Helper processes: TestConcurrentAdd runs this test binary again with
// helperEnv set, and each copy adds rules through its own Store.
const (
	helperEnv   = "CORDON_POLICY_TEST_DIR"
	helperTag   = "CORDON_POLICY_TEST_TAG"
	helperCount = 25
)

func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process only")
	}
	s := OpenStore(dir)
	for i := range helperCount {
		if _, err := s.Add(rule(t, fmt.Sprintf("allow h%d.%s.example", i, os.Getenv(helperTag)))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(0)
}

// Several processes and goroutines adding rules at once lose none.
func TestConcurrentAdd(t *testing.T) {
	dir := t.TempDir()
	const procs, goroutines = 4, 4
	var cmds []*exec.Cmd
	for p := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+dir, helperTag+"=p"+strconv.Itoa(p))
		cmd.Stderr = &bytes.Buffer{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			s := OpenStore(dir)
			for i := range helperCount {
				if _, err := s.Add(rule(t, fmt.Sprintf("allow h%d.g%d.example", i, g))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper: %v: %s", err, cmd.Stderr)
		}
	}

	p, err := OpenStore(dir).Load()
	if err != nil {
		t.Fatal(err)
	}
	if want := (procs + goroutines) * helperCount; len(p.Rules) != want {
		t.Fatalf("%d rules stored, want %d", len(p.Rules), want)
	}
	ids := map[string]bool{}
	for _, r := range p.Rules {
		if ids[r.ID] {
			t.Errorf("ID %s used twice", r.ID)
		}
		ids[r.ID] = true
	}
}
