package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/cordon-dev/cordon/internal/names"
	"github.com/cordon-dev/cordon/internal/state"
)

// Record is what cordon remembers of a sandbox, in its directory's
// sandbox.json.
type Record struct {
	Version    int       `json:"version"`
	Name       string    `json:"name"`
	Agent      string    `json:"agent"`
	Workspaces []Mount   `json:"workspaces"`
	Created    time.Time `json:"created"`
}

const recordVersion = 1

// Errors a caller can branch on.
var (
	ErrNotFound = errors.New("no such sandbox")
	ErrRunning  = errors.New("sandbox is running")
)

// Store keeps the sandboxes: their persistent directories under
// stateDir/sandboxes and their runtime directories under
// runtimeDir/sandboxes.
type Store struct {
	root    string
	runtime string
}

// OpenStore returns the store; it creates nothing until a sandbox is.
func OpenStore(stateDir, runtimeDir string) *Store {
	return &Store{root: filepath.Join(stateDir, "sandboxes"), runtime: filepath.Join(runtimeDir, "sandboxes")}
}

// Dir is a sandbox's persistent directory.
func (s *Store) Dir(name string) string { return filepath.Join(s.root, name) }

// RuntimeDir is a sandbox's runtime directory, which holds its sockets.
func (s *Store) RuntimeDir(name string) string { return filepath.Join(s.runtime, name) }

func (s *Store) recordPath(name string) string { return filepath.Join(s.Dir(name), "sandbox.json") }

// Get reads a sandbox's record.
func (s *Store) Get(name string) (*Record, error) {
	if err := names.Check("sandbox", name); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(s.recordPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := state.DecodeVersioned(s.recordPath(name), data, recordVersion, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Create writes a new sandbox's record and directories.
func (s *Store) Create(r Record) error {
	if err := names.Check("sandbox", r.Name); err != nil {
		return err
	}
	if err := state.EnsureDir(s.root); err != nil {
		return err
	}
	if err := state.EnsureDir(s.Dir(r.Name)); err != nil {
		return err
	}
	r.Version = recordVersion
	data, err := state.EncodeJSON(r)
	if err != nil {
		return err
	}
	return state.Update(s.recordPath(r.Name), 0o600, func(old []byte) ([]byte, error) {
		if old != nil {
			return nil, fmt.Errorf("sandbox %q already exists", r.Name)
		}
		return data, nil
	})
}

// List returns every sandbox's record, sorted by name. Unreadable records
// are skipped and reported in the error.
func (s *Store) List() ([]*Record, error) {
	entries, err := os.ReadDir(s.root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Record
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || names.Check("sandbox", e.Name()) != nil {
			continue
		}
		r, err := s.Get(e.Name())
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Record) int { return strings.Compare(a.Name, b.Name) })
	return out, errors.Join(errs...)
}

// Lock marks a sandbox as running for as long as the returned lock is
// held: the process that runs it holds it, and nobody else can start or
// remove the sandbox meanwhile. It fails with ErrRunning if held.
func (s *Store) Lock(name string) (*flock.Flock, error) {
	if err := state.EnsureDir(s.Dir(name)); err != nil {
		return nil, err
	}
	l := flock.New(filepath.Join(s.Dir(name), "run.lock"))
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("locking sandbox %s: %w", name, err)
	}
	if !ok {
		return nil, fmt.Errorf("%q: %w", name, ErrRunning)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(name), "run.pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		l.Unlock()
		return nil, err
	}
	return l, nil
}

// Running reports whether a process holds the sandbox's lock, and its PID.
func (s *Store) Running(name string) (bool, int) {
	l := flock.New(filepath.Join(s.Dir(name), "run.lock"))
	ok, err := l.TryRLock()
	if err != nil {
		return false, 0
	}
	if ok {
		l.Unlock()
		return false, 0
	}
	data, _ := os.ReadFile(filepath.Join(s.Dir(name), "run.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return true, pid
}

// Remove deletes a sandbox's directory: its writable layer, its home and
// its record. A running sandbox is not removed.
func (s *Store) Remove(name string) error {
	if _, err := s.Get(name); err != nil {
		return err
	}
	l, err := s.Lock(name)
	if err != nil {
		return err
	}
	defer l.Unlock()
	// Rename first, so that a sandbox half removed is never mistaken for
	// one that exists; then delete at leisure.
	trash := s.Dir(name) + ".removing-" + strconv.Itoa(os.Getpid())
	if err := os.Rename(s.Dir(name), trash); err != nil {
		return fmt.Errorf("removing sandbox %s: %w", name, err)
	}
	os.RemoveAll(s.RuntimeDir(name))
	if err := removeAll(trash); err != nil {
		return fmt.Errorf("removing sandbox %s: %w", name, err)
	}
	return nil
}

// removeAll removes a tree, first making directories writable: the
// layer holds whatever the sandbox wrote, including read-only directories.
func removeAll(path string) error {
	if err := os.RemoveAll(path); err == nil {
		return nil
	}
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}
