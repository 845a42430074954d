package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// When cordon runs as root, every ID inside maps to itself, and the
// sandbox's root reads what the host's root reads. The host's private
// files in its system trees (/etc/shadow, host and TLS keys, a database's
// files, root-only logs) are therefore covered: a directory that other
// users may not list or enter is replaced by an empty one of the
// sandbox's own, and a non-empty file they may not read reads as empty.
// Empty files (lock files) are left alone, so that package managers
// inside keep working. For a normal user none of this is needed: only
// their own ID exists inside, and the host's permissions already apply.

// privateTrees are the top-level directories searched. /usr and the
// program directories hold no host secrets worth a search of their size;
// homes, /root and /tmp are not shown at all.
var privateTrees = []string{"etc", "var", "srv", "opt", "boot", "mnt", "media"}

// publicByDesign are package managers' databases inside those trees:
// large, read by every user, and holding nothing of the host's own. The
// search skips them to keep a sandbox's start quick.
var publicByDesign = map[string]bool{
	"/var/lib/dpkg": true, "/var/lib/apt": true, "/var/cache/apt": true,
	"/var/lib/rpm": true, "/var/cache/dnf": true, "/var/lib/pacman": true,
	"/var/lib/flatpak": true, "/var/lib/snapd": true,
}

// privateEntry is a host path that only the host's own users may read.
type privateEntry struct {
	path     string // absolute, on the host
	dir      bool
	uid, gid int
	mode     os.FileMode
}

// searchPrivate starts the search for the host's private files when
// cordon runs as root, and returns where its result will be delivered, or
// nil. It runs while init makes its mounts, and reads the host's own
// trees, not the overlays.
func searchPrivate() <-chan []privateEntry {
	if !identityMapped() {
		return nil
	}
	found := make(chan []privateEntry, 1)
	go func() { found <- findPrivate() }()
	return found
}

// identityMapped reports whether this process's user namespace maps every
// ID to itself, which is how cordon runs as root.
func identityMapped() bool {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(data))
	return len(fields) == 3 && fields[0] == "0" && fields[1] == "0" && fields[2] == "4294967295"
}

// findPrivate searches the host's system trees for private entries. It
// stays on each tree's filesystem: what is mounted below one is not part
// of the overlay that shows it. It reads directories with bare system
// calls, each entry examined relative to its open directory, because it
// runs on every sandbox start.
func findPrivate() []privateEntry {
	var found []privateEntry
	note := func(path string, st *unix.Stat_t) {
		found = append(found, privateEntry{path: path, dir: st.Mode&unix.S_IFMT == unix.S_IFDIR,
			uid: int(st.Uid), gid: int(st.Gid), mode: os.FileMode(st.Mode & 0o7777)})
	}
	type dir struct {
		path string
		dev  uint64
	}
	var pending []dir
	for _, top := range privateTrees {
		path := "/" + top
		var st unix.Stat_t
		if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if st.Mode&0o005 != 0o005 {
			note(path, &st)
			continue
		}
		pending = append(pending, dir{path, st.Dev})
	}

	buf := make([]byte, 32<<10)
	var entries []dirent
	for len(pending) > 0 {
		d := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		fd, err := unix.Open(d.path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		entries = entries[:0]
		for {
			n, err := unix.ReadDirent(fd, buf)
			if err != nil || n <= 0 {
				break
			}
			entries = appendDirents(entries, buf[:n])
		}
		for _, e := range entries {
			// Links, devices and sockets hold nothing to read.
			if e.kind != unix.DT_DIR && e.kind != unix.DT_REG && e.kind != unix.DT_UNKNOWN {
				continue
			}
			var st unix.Stat_t
			if unix.Fstatat(fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Dev != d.dev {
				continue
			}
			path := d.path + "/" + e.name
			switch kind, perm := st.Mode&unix.S_IFMT, st.Mode&0o777; {
			case kind == unix.S_IFDIR && perm&0o005 != 0o005:
				note(path, &st)
			case kind == unix.S_IFDIR && !publicByDesign[path]:
				pending = append(pending, dir{path, d.dev})
			case kind == unix.S_IFREG && perm&0o004 == 0 && st.Size > 0:
				note(path, &st)
			}
		}
		unix.Close(fd)
	}
	return found
}

// coverPrivate covers each private entry inside root. A directory gets an
// empty one from the sandbox's own directory, with the same owner and
// mode, so that what is written there (a package manager's partial
// downloads) stays in the sandbox; a file gets /dev/null. An entry that
// has gone since the search (a temporary file, a rotated log) needs no
// cover.
func coverPrivate(spec Spec, root string, entries []privateEntry) error {
	store := filepath.Join(spec.Dir, "private")
	for _, p := range entries {
		target := filepath.Join(root, p.path)
		if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		source := "/dev/null"
		if p.dir {
			source = filepath.Join(store, url.PathEscape(p.path))
			if err := emptyDirLike(source, p); err != nil {
				return err
			}
		}
		err := unix.Mount(source, target, "", unix.MS_BIND, "")
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("covering %s: %w", p.path, err)
		}
	}
	return nil
}

// emptyDirLike makes dir, if it is not there, with the owner and mode of
// the private directory it stands in for.
func emptyDirLike(dir string, p privateEntry) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chown(dir, p.uid, p.gid); err != nil {
		return err
	}
	return os.Chmod(dir, p.mode)
}

// dirent is a directory entry as getdents64 returns it: a name and the
// type the filesystem records, which spares a stat of links.
type dirent struct {
	name string
	kind uint8
}

// appendDirents parses linux_dirent64 records: inode (8 bytes), offset
// (8), record length (2), type (1), then the NUL-terminated name.
func appendDirents(out []dirent, buf []byte) []dirent {
	for len(buf) >= 19 {
		reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
		if reclen < 19 || reclen > len(buf) {
			break
		}
		kind, name := buf[18], buf[19:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		// An inode of 0 is a deleted entry; a name no directory can hold
		// (empty, or with a slash) is skipped rather than trusted.
		valid := len(name) > 0 && bytes.IndexByte(name, '/') < 0 &&
			string(name) != "." && string(name) != ".."
		if binary.NativeEndian.Uint64(buf[0:8]) != 0 && valid {
			out = append(out, dirent{name: string(name), kind: kind})
		}
		buf = buf[reclen:]
	}
	return out
}
