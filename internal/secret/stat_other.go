//go:build !linux

package secret

import (
	"errors"
	"os"
)

// statPath identifies the file at the NUL-terminated path pathz. exists is
// false, with no error, when there is no file there.
//
// Outside Linux a fileID holds only the size and modification time, so a
// rewrite that keeps both within the file system's timestamp resolution
// goes unnoticed until the next change. cordon's sandbox runs on Linux
// only; this exists so the package builds elsewhere.
func statPath(pathz []byte) (fileID, bool, error) {
	info, err := os.Stat(string(pathz[:len(pathz)-1]))
	if errors.Is(err, os.ErrNotExist) {
		return fileID{}, false, nil
	}
	if err != nil {
		return fileID{}, false, err
	}
	return fileID{size: info.Size(), mtime: info.ModTime().UnixNano()}, true, nil
}

// statFile identifies the open file f the way statPath identifies a path.
func statFile(f *os.File) (fileID, error) {
	info, err := f.Stat()
	if err != nil {
		return fileID{}, err
	}
	return fileID{size: info.Size(), mtime: info.ModTime().UnixNano()}, nil
}
