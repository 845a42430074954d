package secret

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"

	"github.com/cordon-dev/cordon/internal/names"
	"github.com/cordon-dev/cordon/internal/state"
)

// The files of a FileStore, in the directory given to OpenFile.
const (
	StoreFileName = "secrets.age" // the secrets, encrypted with age
	KeyFileName   = "secrets.key" // the age X25519 identity they are encrypted to
)

const (
	// maxStoreSize bounds what is read of the store and of its plaintext.
	// A store of ten thousand long keys is a few megabytes.
	maxStoreSize = 16 << 20

	// maxKeySize bounds what is read of the key file, which holds one line
	// of key and a few of comments.
	maxKeySize = 64 << 10
)

// retryFailedAfter is how long Snapshot keeps returning the error from a
// store it could not read before trying again, when the store itself has not
// changed. The retry picks up a key file put back in place; the delay keeps a
// broken store from costing a read per request. Tests shorten it.
var retryFailedAfter = time.Second

// FileStore is a Store kept in one age-encrypted file, StoreFileName,
// encrypted to the X25519 identity in KeyFileName next to it. Both files
// are 0600 and their directory 0700. The key is made by the first write;
// reading a store that does not exist yet creates nothing.
//
// Every write runs under a lock file (StoreFileName + ".lock") and
// replaces the store atomically, so writers in several processes lose
// nothing and readers never see a partial file. A store that cannot be
// read, decrypted or parsed is an error for reads and writes alike; it is
// never replaced by an empty one.
//
// Anyone who can read the key file can read the secrets: the encryption
// protects copies of the store (backups, a synced directory) made without
// the key, not the secrets from the user's own account.
type FileStore struct {
	dir     string
	path    string // the store
	keyPath string
	pathz   []byte // path with a final NUL, for statPath

	reloadMu sync.Mutex // one reload at a time
	pollMu   sync.Mutex
	poll     state.Poll
	current  atomic.Pointer[loaded]
	loads    atomic.Int64 // reads of the store by Snapshot, for tests
	decrypts atomic.Int64 // decryptions, by Snapshot or a write, for tests
}

var _ Store = (*FileStore)(nil)

// loaded is what one read of the store found.
//
// file keeps the store that was read open. While it is open its inode
// number cannot be given to another file, so a later stat of the path that
// finds the same device, inode, size and times has found the same file,
// unchanged: cordon only ever replaces the store, never rewrites it in
// place.
type loaded struct {
	exists bool
	id     fileID   // when exists
	file   *os.File // when exists and the open succeeded
	snap   *Snapshot
	err    error
	at     time.Time // when err happened
}

// fileID tells versions of a file apart without reading it.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds since the Unix epoch
}

// OpenFile returns the file store in dir, which is usually the Data
// directory of state.Dirs. It creates nothing and reads nothing: a missing
// or broken store is reported by the first Snapshot or write.
func OpenFile(dir string) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("opening secret store: no directory given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("opening secret store in %s: %w", dir, err)
	}
	path := filepath.Join(abs, StoreFileName)
	if strings.IndexByte(path, 0) >= 0 {
		return nil, fmt.Errorf("opening secret store in %q: the path contains a NUL byte", dir)
	}
	return &FileStore{
		dir:     abs,
		path:    path,
		keyPath: filepath.Join(abs, KeyFileName),
		pathz:   append([]byte(path), 0),
		poll:    state.NewPoll(abs),
	}, nil
}

// Path returns the path of the encrypted store.
func (s *FileStore) Path() string { return s.path }

// KeyPath returns the path of the key file.
func (s *FileStore) KeyPath() string { return s.keyPath }

// Close releases the store file that s holds open to detect changes. s can
// still be used afterwards; it opens the file again when needed.
func (s *FileStore) Close() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if c := s.current.Swap(nil); c != nil && c.file != nil {
		return c.file.Close()
	}
	return nil
}

// Snapshot returns the store's contents. When the store file is the one
// read last time, it costs one stat system call and does not allocate;
// otherwise it reads and decrypts the file again. A missing store is
// empty; an unreadable one is an error naming the path and the cause.
func (s *FileStore) Snapshot() (*Snapshot, error) {
	// While no cordon process wrote to the directory, the snapshot in hand
	// is current: one memory load instead of a stat (see state.Changes).
	now := time.Now()
	s.pollMu.Lock()
	due, gen := s.poll.Due(now)
	s.pollMu.Unlock()
	if c := s.current.Load(); c != nil && c.err == nil && !due {
		return c.snap, nil
	}
	defer func() {
		s.pollMu.Lock()
		s.poll.Seen(gen, now)
		s.pollMu.Unlock()
	}()

	id, exists, err := statPath(s.pathz)
	if err != nil {
		return nil, fmt.Errorf("reading secret store %s: %w", s.path, err)
	}
	if c := s.current.Load(); c.matches(exists, id) {
		return c.snap, c.err
	}
	return s.reload()
}

// matches reports whether c can answer for the store file found by a stat.
func (c *loaded) matches(exists bool, id fileID) bool {
	if c == nil || c.exists != exists || c.id != id {
		return false
	}
	return c.err == nil || time.Since(c.at) < retryFailedAfter
}

// reload reads the store again and makes the result current.
func (s *FileStore) reload() (*Snapshot, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()

	// Goroutines that found the same change queue up here; the first one
	// reads the file and the others use its result.
	if id, exists, err := statPath(s.pathz); err == nil {
		if c := s.current.Load(); c.matches(exists, id) {
			return c.snap, c.err
		}
	}

	next := s.load()
	if old := s.current.Swap(next); old != nil && old.file != nil {
		old.file.Close()
	}
	return next.snap, next.err
}

// load reads, decrypts and parses the store file.
func (s *FileStore) load() *loaded {
	s.loads.Add(1)
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &loaded{snap: newSnapshot(nil)}
	}
	if err != nil {
		// exists stays false so that the next Snapshot tries again.
		return &loaded{err: fmt.Errorf("reading secret store: %w", err), at: time.Now()}
	}

	l := &loaded{exists: true, file: f}
	fail := func(err error) *loaded {
		l.err = fmt.Errorf("reading secret store %s: %w", s.path, err)
		l.at = time.Now()
		return l
	}
	if l.id, err = statFile(f); err != nil {
		l.exists = false
		return fail(err)
	}
	data, err := readAllLimited(f, maxStoreSize)
	if err != nil {
		return fail(err)
	}
	identity, err := s.readKey()
	if err != nil {
		return fail(err)
	}
	entries, err := s.decrypt(data, identity)
	if err != nil {
		return fail(err)
	}
	l.snap = newSnapshot(entries)
	return l
}

// Set implements Store.
func (s *FileStore) Set(scope Scope, service, value string, replace bool) error {
	if err := checkTarget(scope, service); err != nil {
		return fmt.Errorf("setting secret: %w", err)
	}
	if err := ValidateValue(value); err != nil {
		return fmt.Errorf("setting secret %s: %w", describe(scope, service), err)
	}
	if err := state.EnsureDir(s.dir); err != nil {
		return fmt.Errorf("setting secret %s: %w", describe(scope, service), err)
	}

	err := s.update(func(entries []Entry) ([]Entry, error) {
		now := time.Now().UTC()
		i := slices.IndexFunc(entries, func(e Entry) bool {
			return e.Scope == scope && e.Service == service
		})
		if i < 0 {
			e := Entry{Scope: scope, Service: service, Value: value, Updated: now}
			return append(entries, e), nil
		}
		if !replace {
			return nil, ErrExists
		}
		entries[i].Value = value
		entries[i].Updated = now
		return entries, nil
	})
	if err != nil {
		return fmt.Errorf("setting secret %s: %w", describe(scope, service), err)
	}
	return nil
}

// Delete implements Store.
func (s *FileStore) Delete(scope Scope, service string) error {
	if err := checkTarget(scope, service); err != nil {
		return fmt.Errorf("deleting secret: %w", err)
	}
	err := s.updateExisting(func(entries []Entry) ([]Entry, error) {
		n := len(entries)
		entries = slices.DeleteFunc(entries, func(e Entry) bool {
			return e.Scope == scope && e.Service == service
		})
		if len(entries) == n {
			return nil, ErrNotFound
		}
		return entries, nil
	})
	if errors.Is(err, errNoStore) {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("deleting secret %s: %w", describe(scope, service), err)
	}
	return nil
}

// DeleteScope implements Store.
func (s *FileStore) DeleteScope(scope Scope) (int, error) {
	if scope.IsGlobal() {
		return 0, errors.New("deleting secrets: refusing to delete every global secret at once")
	}
	if err := scope.Validate(); err != nil {
		return 0, fmt.Errorf("deleting secrets: %w", err)
	}
	var deleted int
	err := s.updateExisting(func(entries []Entry) ([]Entry, error) {
		n := len(entries)
		entries = slices.DeleteFunc(entries, func(e Entry) bool { return e.Scope == scope })
		if deleted = n - len(entries); deleted == 0 {
			return nil, errUnchanged
		}
		return entries, nil
	})
	if errors.Is(err, errNoStore) || errors.Is(err, errUnchanged) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("deleting the secrets of the %s scope: %w", scope, err)
	}
	return deleted, nil
}

var (
	// errUnchanged stops an update that has nothing to write.
	errUnchanged = errors.New("nothing to change")

	// errNoStore reports that there is no store to delete from.
	errNoStore = errors.New("no secret store")
)

// updateExisting is update for changes that only remove entries: when there
// is no store it returns errNoStore and creates nothing, not even the
// directory or the lock file.
func (s *FileStore) updateExisting(change func([]Entry) ([]Entry, error)) error {
	if _, err := os.Lstat(s.path); errors.Is(err, fs.ErrNotExist) {
		return errNoStore
	}
	return s.update(func(entries []Entry) ([]Entry, error) {
		if entries == nil {
			// The store was removed after the check above.
			return nil, errNoStore
		}
		return change(entries)
	})
}

// update applies change to the store's entries under the store's lock and
// writes the result. The directory must exist. entries is nil when there is
// no store yet; writing one then uses the key file if there is one and
// creates it otherwise. When the store cannot be read, change is not
// called and the file is left as it is.
func (s *FileStore) update(change func(entries []Entry) ([]Entry, error)) error {
	return state.Update(s.path, 0o600, func(old []byte) ([]byte, error) {
		var identity *age.X25519Identity
		var entries []Entry
		if old != nil {
			var err error
			if identity, err = s.readKey(); err != nil {
				return nil, fmt.Errorf("reading secret store %s: %w", s.path, err)
			}
			if entries, err = s.decrypt(old, identity); err != nil {
				return nil, fmt.Errorf("reading secret store %s: %w", s.path, err)
			}
			if entries == nil {
				entries = []Entry{}
			}
		}

		entries, err := change(entries)
		if err != nil {
			return nil, err
		}

		if identity == nil {
			if identity, err = s.keyForNewStore(); err != nil {
				return nil, err
			}
		}
		data, err := seal(entries, identity)
		if err != nil {
			return nil, fmt.Errorf("writing secret store %s: %w", s.path, err)
		}
		return data, nil
	})
}

// decrypt decrypts and parses the store's bytes.
func (s *FileStore) decrypt(data []byte, identity *age.X25519Identity) ([]Entry, error) {
	s.decrypts.Add(1)
	r, err := age.Decrypt(bytes.NewReader(data), identity)
	if err != nil {
		if _, ok := errors.AsType[*age.NoIdentityMatchError](err); ok {
			return nil, fmt.Errorf("it was not encrypted to the key in %s", s.keyPath)
		}
		return nil, fmt.Errorf("decrypting: %w", err)
	}
	plain, err := readAllLimited(r, maxStoreSize)
	if err != nil {
		return nil, fmt.Errorf("decrypting: %w", err)
	}
	entries, err := decodeEntries(plain)
	clear(plain)
	if err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	return entries, nil
}

// seal encodes entries and encrypts them to identity's recipient.
func seal(entries []Entry, identity *age.X25519Identity) ([]byte, error) {
	plain, err := encodeEntries(entries)
	if err != nil {
		return nil, err
	}
	defer clear(plain)

	var out bytes.Buffer
	w, err := age.Encrypt(&out, identity.Recipient())
	if err != nil {
		return nil, fmt.Errorf("encrypting: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("encrypting: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypting: %w", err)
	}
	return out.Bytes(), nil
}

// readKey reads and parses the key file. It refuses a key file that other
// users could read or write.
func (s *FileStore) readKey() (*age.X25519Identity, error) {
	f, err := os.Open(s.keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf(
			"its key file %s is missing, and without it the secrets cannot be decrypted", s.keyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	defer f.Close()

	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", s.keyPath)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf(
			"key file %s can be used by other users (mode %04o); restrict it with chmod 600",
			s.keyPath, perm)
	}
	data, err := readAllLimited(f, maxKeySize)
	if err != nil {
		return nil, fmt.Errorf("reading key %s: %w", s.keyPath, err)
	}
	defer clear(data)
	identity, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", s.keyPath, err)
	}
	return identity, nil
}

// keyForNewStore returns the key to encrypt a new store to: the key file's
// if there is one, and otherwise a new key, which it writes. It runs under
// the store's lock, which every writer takes, so the key is made only once.
func (s *FileStore) keyForNewStore() (*age.X25519Identity, error) {
	if _, err := os.Lstat(s.keyPath); !errors.Is(err, fs.ErrNotExist) {
		return s.readKey()
	}
	identity, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("creating key: %w", err)
	}
	text := fmt.Sprintf("# cordon secret store key: it decrypts %s in this directory.\n"+
		"# Anyone who has this file can read the secrets; without it they are lost.\n"+
		"# created: %s\n"+
		"# public key: %s\n"+
		"%s\n",
		StoreFileName, time.Now().UTC().Format(time.RFC3339), identity.Recipient(), identity)
	data := []byte(text)
	defer clear(data)
	if err := state.WriteFile(s.keyPath, data, 0o600); err != nil {
		return nil, fmt.Errorf("creating key: %w", err)
	}
	return identity, nil
}

// parseKey reads a key file: comment lines starting with '#', blank lines,
// and exactly one "AGE-SECRET-KEY-1..." line. This is the age identity file
// format, so `age -d -i secrets.key secrets.age` can recover the store.
// Errors give line numbers, never the text, which is key material.
func parseKey(data []byte) (*age.X25519Identity, error) {
	var identity *age.X25519Identity
	scanner := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; scanner.Scan(); n++ {
		line := strings.TrimSpace(scanner.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if identity != nil {
			return nil, fmt.Errorf("line %d: a second key; the file must hold exactly one", n)
		}
		id, err := age.ParseX25519Identity(line)
		if err != nil {
			return nil, fmt.Errorf("line %d is not an age X25519 secret key", n)
		}
		identity = id
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	if identity == nil {
		return nil, errors.New("no key found")
	}
	return identity, nil
}

// readAllLimited reads r to the end, failing if it holds more than limit
// bytes.
func readAllLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// checkTarget validates the scope and service a write names.
func checkTarget(scope Scope, service string) error {
	if err := scope.Validate(); err != nil {
		return err
	}
	return names.Check("provider", service)
}

// describe names a secret in messages: "openai (global)".
func describe(scope Scope, service string) string {
	return service + " (" + scope.String() + ")"
}
