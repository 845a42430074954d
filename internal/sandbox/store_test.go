package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStoreLifecycle(t *testing.T) {
	root := t.TempDir()
	s := OpenStore(filepath.Join(root, "state"), filepath.Join(root, "run"))
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Fatalf("empty store lists %v, %v", list, err)
	}
	if _, err := s.Get("box"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing sandbox: %v", err)
	}
	rec := Record{Name: "box", Agent: "shell", Workspaces: []Mount{{Source: "/src", Target: "/src"}}, Created: time.Now().UTC()}
	if err := s.Create(rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(rec); err == nil {
		t.Error("creating a sandbox twice succeeded")
	}
	got, err := s.Get("box")
	if err != nil || got.Agent != "shell" || len(got.Workspaces) != 1 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if err := s.Create(Record{Name: "Bad Name"}); err == nil {
		t.Error("an invalid name was accepted")
	}

	// While one process holds the lock, the sandbox is running and can be
	// neither started again nor removed.
	if running, _ := s.Running("box"); running {
		t.Error("running before anything holds the lock")
	}
	lock, err := s.Lock("box")
	if err != nil {
		t.Fatal(err)
	}
	if running, pid := s.Running("box"); !running || pid != os.Getpid() {
		t.Errorf("Running = %v, %d", running, pid)
	}
	if _, err := s.Lock("box"); !errors.Is(err, ErrRunning) {
		t.Errorf("second Lock: %v", err)
	}
	if err := s.Remove("box"); !errors.Is(err, ErrRunning) {
		t.Errorf("Remove while running: %v", err)
	}
	lock.Unlock()

	// The layer may hold read-only directories the agent made.
	ro := filepath.Join(s.Dir("box"), "layer", "upper", "usr", "ro")
	if err := os.MkdirAll(filepath.Join(ro, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(ro, 0o500)
	if err := s.Remove("box"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir("box")); !os.IsNotExist(err) {
		t.Errorf("sandbox directory left behind: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "state", "sandboxes"))
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
	if err := s.Remove("box"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
}

func TestStoreListSkipsOthers(t *testing.T) {
	root := t.TempDir()
	s := OpenStore(root, root)
	for _, name := range []string{"b", "a"} {
		if err := s.Create(Record{Name: name, Agent: "shell"}); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(root, "sandboxes", "NotAName"), 0o700)
	os.WriteFile(filepath.Join(root, "sandboxes", "stray-file"), nil, 0o600)
	os.MkdirAll(filepath.Join(root, "sandboxes", "half-made"), 0o700)
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "a" || list[1].Name != "b" {
		t.Errorf("List = %+v", list)
	}
}
