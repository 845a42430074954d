package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
)

// LockTimeout bounds how long Update waits for another cordon process to
// release a file's lock before giving up with an error.
var LockTimeout = 30 * time.Second

// WriteFile replaces path with data atomically: the data goes to a temporary
// file in the same directory, is synced, given mode perm and renamed over
// path, and the directory is synced. A reader sees the old file or the new
// one, never a mix, and a crash at any moment leaves one of the two.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// On any failure below, the temporary file must not be left behind.
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	committed = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// Lock takes an exclusive lock on path's companion lock file (path + ".lock"),
// waiting up to LockTimeout. The returned function releases it.
func Lock(path string) (unlock func(), err error) {
	lock := flock.New(path + ".lock")
	ctx, cancel := context.WithTimeout(context.Background(), LockTimeout)
	defer cancel()
	ok, err := lock.TryLockContext(ctx, 10*time.Millisecond)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if !ok {
		return nil, fmt.Errorf("locking %s: another cordon process held it for %v", path, LockTimeout)
	}
	return func() { lock.Unlock() }, nil
}

// Update reads path, passes its contents to change (nil when the file does
// not exist yet) and writes what change returns, all under path's lock, so
// that concurrent updates from several processes are applied one after the
// other and none is lost. When change returns an error, or returns the same
// bytes, nothing is written.
func Update(path string, perm fs.FileMode, change func(old []byte) ([]byte, error)) error {
	unlock, err := Lock(path)
	if err != nil {
		return err
	}
	defer unlock()
	removeStaleTemps(path)

	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	data, err := change(old)
	if err != nil {
		return err
	}
	if old != nil && bytes.Equal(old, data) {
		return nil
	}
	if err := WriteFile(path, data, perm); err != nil {
		return err
	}
	WatchChanges(filepath.Dir(path), true).Bump()
	return nil
}

// removeStaleTemps deletes temporary files that writers of path killed
// mid-write left behind. It runs under path's lock, which every writer of
// path holds while its temporary file exists, so any it finds are dead.
func removeStaleTemps(path string) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "."+globEscape(base)+".tmp-*"))
	for _, m := range matches {
		os.Remove(m)
	}
}

// globEscape quotes the characters filepath.Match treats specially.
func globEscape(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		if r == '*' || r == '?' || r == '[' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// DecodeVersioned decodes a human-edited JSON file into v. The file must
// carry "version": want, and fields that v does not know are an error rather
// than silently dropped, so a typo in a hand edit is reported. name is used
// in error messages (usually the file's path).
func DecodeVersioned(name string, data []byte, want int, v any) error {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("%s: %w", name, describeJSONError(data, err))
	}
	if head.Version == nil {
		return fmt.Errorf("%s: no \"version\" field", name)
	}
	if *head.Version != want {
		return fmt.Errorf("%s: version %d is not supported (this cordon reads version %d)",
			name, *head.Version, want)
	}

	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", name, describeJSONError(data, err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: unexpected data after the JSON object", name)
	}
	return nil
}

// describeJSONError adds the line number to a syntax error, which
// encoding/json reports only as a byte offset.
func describeJSONError(data []byte, err error) error {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) && syntax.Offset <= int64(len(data)) {
		line := 1 + bytes.Count(data[:syntax.Offset], []byte("\n"))
		return fmt.Errorf("line %d: %v", line, err)
	}
	return err
}

// EncodeJSON renders v as indented JSON with a final newline, the form
// cordon writes human-edited files in.
func EncodeJSON(v any) ([]byte, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}
