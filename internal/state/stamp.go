package state

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// Stamp identifies one version of a file, so that a store re-reads it only
// when it changed. A rename over the file changes the inode, so a rewrite
// within the clock's resolution is still seen. The zero Stamp is a file
// that does not exist.
type Stamp struct {
	Exists bool
	ino    uint64
	size   int64
	mtime  time.Time
}

// StampOf stats path. A missing file is the zero Stamp, not an error.
func StampOf(path string) (Stamp, error) {
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Stamp{}, nil
	}
	if err != nil {
		return Stamp{}, err
	}
	stamp := Stamp{Exists: true, size: info.Size(), mtime: info.ModTime()}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		stamp.ino = st.Ino
	}
	return stamp, nil
}
