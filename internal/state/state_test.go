package state

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Dirs
		wantErr bool
	}{
		{
			name: "CORDON_HOME overrides everything",
			env:  map[string]string{"CORDON_HOME": "/srv/cordon", "HOME": "/home/u", "XDG_CONFIG_HOME": "/x"},
			want: Dirs{"/srv/cordon", "/srv/cordon", "/srv/cordon", "/srv/cordon/run"},
		},
		{
			name: "XDG defaults under HOME",
			env:  map[string]string{"HOME": "/home/u"},
			want: Dirs{"/home/u/.config/cordon", "/home/u/.local/share/cordon", "/home/u/.local/state/cordon", "/home/u/.local/state/cordon/run"},
		},
		{
			name: "XDG variables",
			env: map[string]string{"HOME": "/home/u", "XDG_CONFIG_HOME": "/c", "XDG_DATA_HOME": "/d",
				"XDG_STATE_HOME": "/s", "XDG_RUNTIME_DIR": "/run/user/1000"},
			want: Dirs{"/c/cordon", "/d/cordon", "/s/cordon", "/run/user/1000/cordon"},
		},
		{
			name: "relative XDG paths are ignored",
			env:  map[string]string{"HOME": "/home/u", "XDG_CONFIG_HOME": "rel", "XDG_RUNTIME_DIR": "rel"},
			want: Dirs{"/home/u/.config/cordon", "/home/u/.local/share/cordon", "/home/u/.local/state/cordon", "/home/u/.local/state/cordon/run"},
		},
		{name: "no HOME", env: map[string]string{}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolve(func(k string) string { return tt.env[k] })
			if tt.wantErr {
				if err == nil {
					t.Fatalf("resolve = %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestEnsureTightensModes(t *testing.T) {
	root := t.TempDir()
	loose := filepath.Join(root, "loose")
	if err := os.Mkdir(loose, 0o755); err != nil {
		t.Fatal(err)
	}
	d := Dirs{Config: loose, Data: filepath.Join(root, "a/b"), State: loose, Runtime: filepath.Join(root, "run")}
	if err := d.Ensure(); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{d.Config, d.Data, d.Runtime} {
		info, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v, want 0700", dir, info.Mode().Perm())
		}
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.pem")
	for _, content := range []string{"first", "second, longer content"} {
		if err := WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
		info, _ := os.Stat(path)
		if info.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", info.Mode().Perm())
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	// A failed write leaves the old file and no temporary file.
	if err := WriteFile(filepath.Join(dir, "missing", "x"), []byte("x"), 0o600); err == nil {
		t.Error("write into a missing directory succeeded")
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if os.Geteuid() != 0 {
		if err := WriteFile(path, []byte("third"), 0o600); err == nil {
			t.Error("write into a read-only directory succeeded")
		}
		if got, _ := os.ReadFile(path); string(got) != "second, longer content" {
			t.Errorf("file is %q after a failed write", got)
		}
	}
}

func TestUpdateNoChangeNoWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := Update(path, 0o600, func(old []byte) ([]byte, error) {
		if old != nil {
			t.Errorf("old = %q for a missing file", old)
		}
		return []byte("x"), nil
	}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	Update(path, 0o600, func(old []byte) ([]byte, error) { return old, nil })
	wantErr := errors.New("refused")
	if err := Update(path, 0o600, func([]byte) ([]byte, error) { return nil, wantErr }); !errors.Is(err, wantErr) {
		t.Errorf("Update = %v, want the change's error", err)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Error("an unchanged or failed Update rewrote the file")
	}
}

// increment adds one to the counter held in path.
func increment(path string) error {
	return Update(path, 0o600, func(old []byte) ([]byte, error) {
		n := 0
		if len(old) > 0 {
			var err error
			if n, err = strconv.Atoi(string(old)); err != nil {
				return nil, err
			}
		}
		return []byte(strconv.Itoa(n + 1)), nil
	})
}

func TestUpdateConcurrent(t *testing.T) {
	if path := os.Getenv("CORDON_TEST_COUNTER"); path != "" {
		for range 50 {
			if err := increment(path); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		os.Exit(0)
	}

	path := filepath.Join(t.TempDir(), "counter")
	const procs, goroutines = 4, 4

	var cmds []*exec.Cmd
	for range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestUpdateConcurrent$")
		cmd.Env = append(os.Environ(), "CORDON_TEST_COUNTER="+path)
		cmd.Stderr = &bytes.Buffer{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range 50 {
				if err := increment(path); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("worker: %v: %s", err, cmd.Stderr)
		}
	}
	got, _ := os.ReadFile(path)
	if want := strconv.Itoa((procs + goroutines) * 50); string(got) != want {
		t.Errorf("counter = %s, want %s: updates were lost", got, want)
	}
}

func TestDecodeVersioned(t *testing.T) {
	type doc struct {
		Version int    `json:"version"`
		Name    string `json:"name"`
	}
	tests := []struct {
		in, wantErr string
	}{
		{in: `{"version": 1, "name": "x"}`},
		{in: `{"name": "x"}`, wantErr: "no \"version\""},
		{in: `{"version": 3}`, wantErr: "version 3 is not supported"},
		{in: `{"version": 1, "nmae": "x"}`, wantErr: "nmae"},
		{in: "{\"version\": 1,\n\"name\": }", wantErr: "line 2"},
		{in: `{"version": 1} []`, wantErr: "after"},
		{in: ``, wantErr: "f.json"},
	}
	for _, tt := range tests {
		var d doc
		err := DecodeVersioned("f.json", []byte(tt.in), 1, &d)
		if tt.wantErr == "" {
			if err != nil || d.Name != "x" {
				t.Errorf("DecodeVersioned(%q) = %+v, %v", tt.in, d, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("DecodeVersioned(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestUpdateClearsStaleTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "store.json")
	stale := filepath.Join(dir, ".store.json.tmp-123")
	other := filepath.Join(dir, ".other.json.tmp-456")
	os.WriteFile(stale, []byte("half"), 0o600)
	os.WriteFile(other, []byte("half"), 0o600)
	if err := Update(path, 0o600, func([]byte) ([]byte, error) { return []byte("x"), nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("a dead writer's temporary file was kept")
	}
	if _, err := os.Stat(other); err != nil {
		t.Error("another file's temporary file was removed")
	}
}

func TestChangesSeenAcrossMappings(t *testing.T) {
	dir := t.TempDir()
	reader := mapCounter(filepath.Join(dir, ChangesFile), true) // another process's mapping
	if reader == nil {
		t.Fatal("cannot map the counter")
	}
	poll := Poll{changes: reader}
	now := time.Now()
	due, gen := poll.Due(now)
	if !due {
		t.Fatal("a first look is not due")
	}
	poll.Seen(gen, now)
	if due, _ := poll.Due(now.Add(time.Millisecond)); due {
		t.Error("a look is due with nothing changed")
	}
	if err := Update(filepath.Join(dir, "store.json"), 0o600, func([]byte) ([]byte, error) { return []byte("x"), nil }); err != nil {
		t.Fatal(err)
	}
	if due, _ := poll.Due(now.Add(time.Millisecond)); !due {
		t.Error("a write through Update was not seen")
	}
	poll.Seen(reader.Load(), now)
	if due, _ := poll.Due(now.Add(RecheckInterval)); !due {
		t.Error("no recheck after the interval: hand edits would go unseen")
	}
	var none Poll
	if due, _ := none.Due(now); !due {
		t.Error("without a counter, every call must look")
	}
}
