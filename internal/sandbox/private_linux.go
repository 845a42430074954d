package sandbox

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

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

// findPrivate searches the host's system trees, a few directories at a
// time, for private entries. It stays on each tree's filesystem: what is
// mounted below one is not part of the overlay that shows it.
func findPrivate() []privateEntry {
	var (
		mu    sync.Mutex
		found []privateEntry
		wg    sync.WaitGroup
		slots = make(chan struct{}, 4)
	)
	note := func(path string, st *unix.Stat_t) {
		mu.Lock()
		found = append(found, privateEntry{path: path, dir: st.Mode&unix.S_IFMT == unix.S_IFDIR,
			uid: int(st.Uid), gid: int(st.Gid), mode: os.FileMode(st.Mode & 0o7777)})
		mu.Unlock()
	}
	var search func(dir string, dev uint64)
	search = func(dir string, dev uint64) {
		defer wg.Done()
		slots <- struct{}{}
		var below []string
		if f, err := os.Open(dir); err == nil {
			entries, _ := f.ReadDir(-1)
			fd := int(f.Fd())
			for _, e := range entries {
				t := e.Type()
				if !t.IsDir() && !t.IsRegular() {
					continue // links, devices, sockets: nothing to read
				}
				// Relative to the open directory: no path to resolve.
				var st unix.Stat_t
				if unix.Fstatat(fd, e.Name(), &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Dev != dev {
					continue
				}
				path := dir + "/" + e.Name()
				isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
				switch perm := st.Mode & 0o777; {
				case isDir && perm&0o005 != 0o005:
					note(path, &st)
				case isDir && !publicByDesign[path]:
					below = append(below, path)
				case !isDir && perm&0o004 == 0 && st.Size > 0:
					note(path, &st)
				}
			}
			f.Close()
		}
		<-slots
		for _, d := range below {
			wg.Add(1)
			go search(d, dev)
		}
	}
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
		wg.Add(1)
		go search(path, st.Dev)
	}
	wg.Wait()
	return found
}

// coverPrivate covers each private entry inside root. A directory gets an
// empty one from the sandbox's own directory, with the same owner and
// mode, so that what is written there (a package manager's partial
// downloads) stays in the sandbox; a file gets /dev/null.
func coverPrivate(spec Spec, root string, entries []privateEntry) error {
	store := filepath.Join(spec.Dir, "private")
	for _, p := range entries {
		target := filepath.Join(root, p.path)
		if !p.dir {
			if err := unix.Mount("/dev/null", target, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("covering %s: %w", p.path, err)
			}
			continue
		}
		src := filepath.Join(store, url.PathEscape(p.path))
		if err := os.MkdirAll(src, 0o700); err != nil {
			return err
		}
		if err := os.Chown(src, p.uid, p.gid); err != nil {
			return err
		}
		if err := os.Chmod(src, p.mode); err != nil {
			return err
		}
		if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("covering %s: %w", p.path, err)
		}
	}
	return nil
}
