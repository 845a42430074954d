package secret

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// openTest opens a file store in a new directory that does not exist yet.
func openTest(t *testing.T) *FileStore {
	t.Helper()
	s, err := OpenFile(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustSet(t *testing.T, s Store, scope Scope, service, value string) {
	t.Helper()
	if err := s.Set(scope, service, value, false); err != nil {
		t.Fatalf("Set(%v, %q): %v", scope, service, err)
	}
}

func mustSnapshot(t *testing.T, s Store) *Snapshot {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return snap
}

// summary lists a snapshot's entries as "scope service=value".
func summary(snap *Snapshot) []string {
	var out []string
	for _, e := range snap.Entries() {
		out = append(out, e.Scope.String()+" "+e.Service+"="+e.Value)
	}
	return out
}

func TestFileStoreRoundTrip(t *testing.T) {
	s := openTest(t)
	start := time.Now()
	mustSet(t, s, Global(), "openai", "sk-global-openai")
	mustSet(t, s, ForSandbox("dev"), "openai", "sk-dev-openai")
	mustSet(t, s, Global(), "anthropic", "sk-ant-global")

	// A second store on the same directory, as another command would open.
	other, err := OpenFile(filepath.Dir(s.Path()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	got := mustSnapshot(t, other).Entries()
	want := []Entry{
		{Scope: Global(), Service: "anthropic", Value: "sk-ant-global"},
		{Scope: Global(), Service: "openai", Value: "sk-global-openai"},
		{Scope: ForSandbox("dev"), Service: "openai", Value: "sk-dev-openai"},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Entry{}, "Updated")); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	for _, e := range got {
		if d := time.Since(e.Updated); d < -time.Second || d > time.Since(start)+time.Second {
			t.Errorf("%v: Updated is %v, want about now", e, e.Updated)
		}
	}

	snap := mustSnapshot(t, s)
	if e, _ := snap.Lookup("dev", "openai"); e.Value != "sk-dev-openai" {
		t.Errorf("sandbox lookup = %q", e.Value)
	}
	if e, _ := snap.Lookup("other", "openai"); e.Value != "sk-global-openai" {
		t.Errorf("global fallback = %q", e.Value)
	}
}

func TestFileStoreSetReplace(t *testing.T) {
	s := openTest(t)
	mustSet(t, s, Global(), "openai", "first-value")

	err := s.Set(Global(), "openai", "second-value", false)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("Set without replace on an existing entry: %v, want ErrExists", err)
	}
	if strings.Contains(err.Error(), "-value") {
		t.Errorf("error %q contains a value", err)
	}
	if e, _ := mustSnapshot(t, s).Lookup("", "openai"); e.Value != "first-value" {
		t.Errorf("after refused Set, value is %q", e.Value)
	}

	// The same service in another scope is a different entry.
	mustSet(t, s, ForSandbox("dev"), "openai", "dev-value")

	if err := s.Set(Global(), "openai", "second-value", true); err != nil {
		t.Fatalf("Set with replace: %v", err)
	}
	want := []string{"global openai=second-value", "sandbox:dev openai=dev-value"}
	if diff := cmp.Diff(want, summary(mustSnapshot(t, s))); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
}

func TestFileStoreSetRefusesBadInput(t *testing.T) {
	const value = "good-value-123"
	tests := []struct {
		name    string
		scope   Scope
		service string
		value   string
	}{
		{"bad sandbox", ForSandbox("Bad Name"), "openai", value},
		{"empty service", Global(), "", value},
		{"bad service", Global(), "Open/AI", value},
		{"empty value", Global(), "openai", ""},
		{"newline in value", Global(), "openai", "bad-value-456\n"},
		{"NUL in value", Global(), "openai", "bad\x00value-456"},
	}
	s := openTest(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Set(tt.scope, tt.service, tt.value, true)
			if err == nil {
				t.Fatal("Set succeeded")
			}
			if strings.Contains(err.Error(), "value-") {
				t.Errorf("error %q contains the value", err)
			}
		})
	}
	if _, err := os.Stat(filepath.Dir(s.Path())); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("refused writes created the directory: %v", err)
	}
}

func TestFileStoreDelete(t *testing.T) {
	s := openTest(t)

	// Nothing to delete from, and nothing is created by trying.
	if err := s.Delete(Global(), "openai"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete on a missing store: %v, want ErrNotFound", err)
	}
	if n, err := s.DeleteScope(ForSandbox("dev")); n != 0 || err != nil {
		t.Errorf("DeleteScope on a missing store = %d, %v", n, err)
	}
	if _, err := os.Stat(filepath.Dir(s.Path())); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("deleting from a missing store created the directory: %v", err)
	}

	mustSet(t, s, Global(), "openai", "global-openai")
	mustSet(t, s, ForSandbox("dev"), "openai", "dev-openai")

	if err := s.Delete(Global(), "anthropic"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete of a missing service: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ForSandbox("ci"), "openai"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete in a scope without the service: %v, want ErrNotFound", err)
	}
	if err := s.Delete(Global(), "openai"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Delete(Global(), "openai"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	want := []string{"sandbox:dev openai=dev-openai"}
	if diff := cmp.Diff(want, summary(mustSnapshot(t, s))); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
}

func TestFileStoreDeleteScope(t *testing.T) {
	s := openTest(t)
	mustSet(t, s, Global(), "openai", "global-openai")
	mustSet(t, s, ForSandbox("dev"), "openai", "dev-openai")
	mustSet(t, s, ForSandbox("dev"), "anthropic", "dev-anthropic")
	mustSet(t, s, ForSandbox("dev2"), "openai", "dev2-openai")

	n, err := s.DeleteScope(ForSandbox("dev"))
	if err != nil || n != 2 {
		t.Fatalf("DeleteScope = %d, %v; want 2", n, err)
	}
	want := []string{"global openai=global-openai", "sandbox:dev2 openai=dev2-openai"}
	if diff := cmp.Diff(want, summary(mustSnapshot(t, s))); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}

	info, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteScope(ForSandbox("dev")); n != 0 || err != nil {
		t.Errorf("second DeleteScope = %d, %v; want 0", n, err)
	}
	if after, err := os.Stat(s.Path()); err != nil || !os.SameFile(info, after) {
		t.Errorf("DeleteScope with nothing to delete rewrote the store")
	}

	if _, err := s.DeleteScope(Global()); err == nil {
		t.Error("DeleteScope(Global()) succeeded")
	}
	if _, err := s.DeleteScope(ForSandbox("Bad")); err == nil {
		t.Error("DeleteScope with an invalid sandbox name succeeded")
	}
	if got := mustSnapshot(t, s).Len(); got != 2 {
		t.Errorf("%d entries left, want 2", got)
	}
}

func TestFileStoreFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustSet(t, s, Global(), "openai", "sk-value")

	tests := []struct {
		path string
		want fs.FileMode
	}{
		{dir, fs.ModeDir | 0o700},
		{s.Path(), 0o600},
		{s.KeyPath(), 0o600},
	}
	for _, tt := range tests {
		info, err := os.Stat(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode() != tt.want {
			t.Errorf("%s has mode %v, want %v", tt.path, info.Mode(), tt.want)
		}
	}

	// The key file is in age's identity format and matches the store.
	key, err := os.ReadFile(s.KeyPath())
	if err != nil {
		t.Fatal(err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(key))
	if err != nil || len(ids) != 1 {
		t.Fatalf("key file does not hold one age identity: %v", err)
	}
	store, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := age.Decrypt(bytes.NewReader(store), ids...); err != nil {
		t.Errorf("age cannot decrypt the store with the key file: %v", err)
	}
}

func TestFileStoreValueNotInFiles(t *testing.T) {
	const value = "sk-very-distinctive-value-0123456789"
	s := openTest(t)
	mustSet(t, s, Global(), "openai", value)
	mustSet(t, s, ForSandbox("dev"), "anthropic", value+"-2")
	if err := s.Set(Global(), "openai", value, true); err != nil {
		t.Fatal(err)
	}

	entries, err := os.ReadDir(filepath.Dir(s.Path()))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		t.Errorf("directory holds %d files, want the store, its lock, its key and the change counter", len(entries))
	}
	for _, entry := range entries {
		path := filepath.Join(filepath.Dir(s.Path()), entry.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, needle := range []string{value, value[3:20], "sk-very", "openai", "anthropic"} {
			if bytes.Contains(data, []byte(needle)) {
				t.Errorf("%s contains %q", entry.Name(), needle)
			}
		}
	}
}

func TestFileStoreReadCreatesNothing(t *testing.T) {
	parent := t.TempDir()
	s, err := OpenFile(filepath.Join(parent, "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 3 {
		if n := mustSnapshot(t, s).Len(); n != 0 {
			t.Fatalf("empty store has %d entries", n)
		}
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("reading created %d files", len(entries))
	}

	// An existing directory with a key but no store is also an empty store.
	mustSet(t, s, Global(), "openai", "value")
	if err := os.Remove(s.Path()); err != nil {
		t.Fatal(err)
	}
	if n := mustSnapshot(t, s).Len(); n != 0 {
		t.Fatalf("store without its file has %d entries", n)
	}
	key, _ := os.ReadFile(s.KeyPath())
	mustSet(t, s, Global(), "openai", "value")
	if again, _ := os.ReadFile(s.KeyPath()); !bytes.Equal(key, again) {
		t.Error("writing a new store replaced the existing key")
	}
}

func TestOpenFileErrors(t *testing.T) {
	for _, dir := range []string{"", "a\x00b"} {
		if _, err := OpenFile(dir); err == nil {
			t.Errorf("OpenFile(%q) succeeded", dir)
		}
	}
}

func TestFileStoreSnapshotCaches(t *testing.T) {
	s := openTest(t)
	mustSet(t, s, Global(), "openai", "value-1")

	first := mustSnapshot(t, s)
	decrypts := s.decrypts.Load()
	for range 100 {
		if snap := mustSnapshot(t, s); snap != first {
			t.Fatal("unchanged store gave a new snapshot")
		}
	}
	if n := s.decrypts.Load() - decrypts; n != 0 {
		t.Errorf("unchanged store decrypted %d more times", n)
	}

	// Any write is seen by the next call, even one that keeps the size.
	if err := s.Set(Global(), "openai", "value-2", true); err != nil {
		t.Fatal(err)
	}
	if e, _ := mustSnapshot(t, s).Lookup("", "openai"); e.Value != "value-2" {
		t.Errorf("after Set, value is %q", e.Value)
	}
	if n := s.decrypts.Load() - decrypts; n != 2 {
		t.Errorf("Set and one Snapshot decrypted %d times, want 2", n)
	}
}

func TestFileStoreSnapshotConcurrent(t *testing.T) {
	s := openTest(t)
	mustSet(t, s, Global(), "svc", "value-0")

	// Readers run while a writer changes the value; each reader must
	// only ever see values in the order they were written.
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			last := 0
			for {
				select {
				case <-done:
					return
				default:
				}
				snap, err := s.Snapshot()
				if err != nil {
					t.Error(err)
					return
				}
				e, _ := snap.Lookup("", "svc")
				n, _ := strconv.Atoi(strings.TrimPrefix(e.Value, "value-"))
				if n < last {
					t.Errorf("saw value-%d after value-%d", n, last)
					return
				}
				last = n
			}
		})
	}
	for i := 1; i <= 20; i++ {
		if err := s.Set(Global(), "svc", "value-"+strconv.Itoa(i), true); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if e, _ := mustSnapshot(t, s).Lookup("", "svc"); e.Value != "value-20" {
		t.Errorf("final value %q", e.Value)
	}
}

func TestFileStoreConcurrentGoroutines(t *testing.T) {
	const goroutines, each = 8, 10
	s := openTest(t)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				service := fmt.Sprintf("g%d-%d", g, i)
				if err := s.Set(Global(), service, "value-"+service, false); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n := mustSnapshot(t, s).Len(); n != goroutines*each {
		t.Errorf("store holds %d secrets, want %d", n, goroutines*each)
	}
}

// Helper processes: a test that needs another process runs this test
// binary again with helperEnv set, and TestHelperProcess does the work.
const (
	helperEnv      = "CORDON_SECRET_TEST_HELPER" // the store's directory
	helperPrefix   = "CORDON_SECRET_TEST_PREFIX" // services are PREFIX-0, PREFIX-1...
	helperCountEnv = "CORDON_SECRET_TEST_COUNT"
)

func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("runs only as a helper process")
	}
	count, err := strconv.Atoi(os.Getenv(helperCountEnv))
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	prefix := os.Getenv(helperPrefix)
	for i := range count {
		service := fmt.Sprintf("%s-%d", prefix, i)
		if err := s.Set(Global(), service, "value-of-"+service, false); err != nil {
			t.Fatal(err)
		}
	}
}

// startHelper starts a process that sets count global secrets named
// prefix-0, prefix-1... in the store in dir.
func startHelper(t *testing.T, dir, prefix string, count int) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		helperEnv+"="+dir,
		helperPrefix+"="+prefix,
		helperCountEnv+"="+strconv.Itoa(count),
	)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

func TestFileStoreConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	const processes, each = 8, 20
	s := openTest(t)
	dir := filepath.Dir(s.Path())

	// The processes start on a store that does not exist yet, so they also
	// race to create the key.
	type helper struct {
		cmd *exec.Cmd
		out *bytes.Buffer
	}
	var helpers []helper
	for p := range processes {
		cmd, out := startHelper(t, dir, fmt.Sprintf("p%d", p), each)
		helpers = append(helpers, helper{cmd, out})
	}
	for _, h := range helpers {
		if err := h.cmd.Wait(); err != nil {
			t.Errorf("helper: %v\n%s", err, h.out)
		}
	}

	snap := mustSnapshot(t, s)
	if snap.Len() != processes*each {
		t.Errorf("store holds %d secrets, want %d", snap.Len(), processes*each)
	}
	for p := range processes {
		for i := range each {
			service := fmt.Sprintf("p%d-%d", p, i)
			if e, ok := snap.Lookup("", service); !ok || e.Value != "value-of-"+service {
				t.Errorf("%s: got %q, %v", service, e.Value, ok)
			}
		}
	}
}

func TestFileStoreSeesOtherProcess(t *testing.T) {
	s := openTest(t)
	mustSet(t, s, Global(), "local", "local-value")
	if n := mustSnapshot(t, s).Len(); n != 1 {
		t.Fatalf("%d entries, want 1", n)
	}

	cmd, out := startHelper(t, filepath.Dir(s.Path()), "remote", 1)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}

	want := []string{"global local=local-value", "global remote-0=value-of-remote-0"}
	if diff := cmp.Diff(want, summary(mustSnapshot(t, s))); diff != "" {
		t.Errorf("entries after another process's Set (-want +got):\n%s", diff)
	}
}

func TestFileStoreBrokenStore(t *testing.T) {
	const value = "sk-stored-value-0123456789"
	otherKey, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		break_ func(t *testing.T, s *FileStore)
		error  string
	}{
		{"garbage", func(t *testing.T, s *FileStore) {
			writeFile(t, s.Path(), []byte("this is not an age file\n"), 0o600)
		}, "failed to read header"},
		{"empty file", func(t *testing.T, s *FileStore) {
			writeFile(t, s.Path(), nil, 0o600)
		}, "failed to read header"},
		{"truncated header", func(t *testing.T, s *FileStore) {
			data := readFile(t, s.Path())
			writeFile(t, s.Path(), data[:40], 0o600)
		}, "decrypting"},
		{"truncated payload", func(t *testing.T, s *FileStore) {
			data := readFile(t, s.Path())
			writeFile(t, s.Path(), data[:len(data)-10], 0o600)
		}, "decrypting"},
		{"flipped byte", func(t *testing.T, s *FileStore) {
			data := readFile(t, s.Path())
			data[len(data)-5] ^= 1
			writeFile(t, s.Path(), data, 0o600)
		}, "decrypting"},
		{"wrong key", func(t *testing.T, s *FileStore) {
			writeFile(t, s.KeyPath(), []byte(otherKey.String()+"\n"), 0o600)
		}, "not encrypted to the key"},
		{"missing key", func(t *testing.T, s *FileStore) {
			if err := os.Remove(s.KeyPath()); err != nil {
				t.Fatal(err)
			}
		}, "is missing"},
		{"malformed key", func(t *testing.T, s *FileStore) {
			writeFile(t, s.KeyPath(), []byte("# comment\nAGE-SECRET-KEY-1NOTAKEY\n"), 0o600)
		}, "line 2 is not an age X25519 secret key"},
		{"two keys", func(t *testing.T, s *FileStore) {
			key := readFile(t, s.KeyPath())
			writeFile(t, s.KeyPath(), append(key, otherKey.String()+"\n"...), 0o600)
		}, "a second key"},
		{"key readable by others", func(t *testing.T, s *FileStore) {
			if err := os.Chmod(s.KeyPath(), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "can be used by other users (mode 0644)"},
		{"plaintext from another version", func(t *testing.T, s *FileStore) {
			id, err := s.readKey()
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, s.Path(), encrypt(t, id, `{"version":2,"secrets":[]}`), 0o600)
		}, "version 2 is not supported"},
		{"plaintext not JSON", func(t *testing.T, s *FileStore) {
			id, err := s.readKey()
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, s.Path(), encrypt(t, id, value), 0o600)
		}, "malformed JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			mustSet(t, s, Global(), "openai", value)
			mustSet(t, s, ForSandbox("dev"), "openai", value+"-dev")
			mustSnapshot(t, s)
			tt.break_(t, s)
			store, key := readFile(t, s.Path()), readFileIfExists(t, s.KeyPath())

			// A store opened afresh, as by a new process, must fail to
			// read. s itself may keep serving what it decrypted before
			// when only the key file changed, but its writes must fail.
			fresh, err := OpenFile(filepath.Dir(s.Path()))
			if err != nil {
				t.Fatal(err)
			}
			defer fresh.Close()
			var errs []error
			snap, err := fresh.Snapshot()
			if err == nil {
				t.Fatalf("Snapshot of a broken store returned %d entries", snap.Len())
			}
			errs = append(errs, err)
			errs = append(errs, fresh.Set(Global(), "anthropic", "new-value", false))
			errs = append(errs, fresh.Set(Global(), "openai", "new-value", true))
			errs = append(errs, s.Set(Global(), "anthropic", "new-value", false))
			errs = append(errs, fresh.Delete(Global(), "openai"))
			_, err = fresh.DeleteScope(ForSandbox("dev"))
			errs = append(errs, err)

			for i, err := range errs {
				if err == nil {
					t.Errorf("operation %d on a broken store succeeded", i)
					continue
				}
				msg := err.Error()
				if !strings.Contains(msg, s.Path()) || !strings.Contains(msg, tt.error) {
					t.Errorf("operation %d: error %q does not name %s and %q", i, msg, s.Path(), tt.error)
				}
				if strings.Contains(msg, value) || strings.Contains(msg, "new-value") {
					t.Errorf("operation %d: error %q contains a value", i, msg)
				}
				if errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) {
					t.Errorf("operation %d: error %q is a normal outcome", i, msg)
				}
			}

			if !bytes.Equal(store, readFile(t, s.Path())) {
				t.Error("a failed write changed the store")
			}
			if !bytes.Equal(key, readFileIfExists(t, s.KeyPath())) {
				t.Error("a failed write changed the key file")
			}
		})
	}
}

func TestFileStoreRecoversWhenKeyReturns(t *testing.T) {
	defer func(d time.Duration) { retryFailedAfter = d }(retryFailedAfter)
	retryFailedAfter = 50 * time.Millisecond

	s := openTest(t)
	mustSet(t, s, Global(), "openai", "value")
	mustSnapshot(t, s)
	key := readFile(t, s.KeyPath())
	if err := os.Remove(s.KeyPath()); err != nil {
		t.Fatal(err)
	}
	// Force a reload: the store has not changed, but the cache is dropped.
	s.Close()
	if _, err := s.Snapshot(); err == nil {
		t.Fatal("Snapshot without the key succeeded")
	}

	// A broken store that has not changed is not read on every call.
	loads := s.loads.Load()
	for range 10 {
		s.Snapshot()
	}
	if n := s.loads.Load() - loads; n != 0 {
		t.Errorf("unchanged broken store was read %d more times", n)
	}

	writeFile(t, s.KeyPath(), key, 0o600)
	time.Sleep(2 * retryFailedAfter)
	if e, _ := mustSnapshot(t, s).Lookup("", "openai"); e.Value != "value" {
		t.Errorf("after the key returned, value is %q", e.Value)
	}
}

func TestFileStoreSnapshotDoesNotAllocate(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only the Linux stat avoids allocation")
	}
	s := openTest(t)
	mustSet(t, s, Global(), "openai", "value")
	mustSnapshot(t, s)
	allocs := testing.AllocsPerRun(100, func() {
		snap, _ := s.Snapshot()
		snap.Lookup("dev", "openai")
	})
	if allocs != 0 {
		t.Errorf("Snapshot and Lookup on an unchanged store allocate %v times", allocs)
	}
}

// BenchmarkSnapshotLookup measures the per-request path: Snapshot on a
// store that has not changed, then Lookup.
func BenchmarkSnapshotLookup(b *testing.B) {
	s, err := OpenFile(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i := range 20 {
		service := fmt.Sprintf("service-%d", i)
		if err := s.Set(Global(), service, "sk-value-0123456789", false); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Set(ForSandbox("dev"), "service-7", "sk-dev-value", false); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Snapshot(); err != nil {
		b.Fatal(err)
	}

	b.ReportAllocs()
	for b.Loop() {
		snap, err := s.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := snap.Lookup("dev", "service-7"); !ok {
			b.Fatal("not found")
		}
	}
}

// BenchmarkSnapshotReload measures the cost of a change: each Snapshot
// finds a new file and decrypts it.
func BenchmarkSnapshotReload(b *testing.B) {
	s, err := OpenFile(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i := range 20 {
		service := fmt.Sprintf("service-%d", i)
		if err := s.Set(Global(), service, "sk-value-0123456789", false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Close() // drops the cache
		if _, err := s.Snapshot(); err != nil {
			b.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path string, data []byte, perm fs.FileMode) {
	t.Helper()
	// Replace the file rather than rewrite it, as cordon does.
	tmp := path + ".test-tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readFileIfExists(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return data
}

func encrypt(t *testing.T, id *age.X25519Identity, plain string) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := age.Encrypt(&out, id.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(plain)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
