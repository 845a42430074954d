package sandbox

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFindPrivate makes private and public entries in /var/tmp, which the
// search covers, and checks which of them it reports.
func TestFindPrivate(t *testing.T) {
	base, err := os.MkdirTemp("/var/tmp", "cordon-private-")
	if err != nil {
		t.Skip("no /var/tmp to write in:", err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	var inVar, inBase unix.Stat_t
	if unix.Stat("/var", &inVar) != nil || unix.Stat(base, &inBase) != nil || inVar.Dev != inBase.Dev {
		t.Skip("/var/tmp is a filesystem of its own, which the search does not enter")
	}
	os.Chmod(base, 0o755)
	write := func(name string, mode os.FileMode, content string) string {
		path := filepath.Join(base, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, mode)
		return path
	}
	write("etc/host.key", 0o600, "-----BEGIN PRIVATE KEY-----")
	write("etc/lock", 0o600, "")
	write("etc/public.conf", 0o644, "shown")
	write("etc/sub/nested.key", 0o640, "secret")
	closed := filepath.Join(base, "data")
	write("data/inside", 0o644, "under a closed directory")
	os.Chmod(closed, 0o700)
	noList := filepath.Join(base, "nolist")
	write("nolist/x", 0o644, "x")
	os.Chmod(noList, 0o711)

	start := time.Now()
	found := findPrivate()
	t.Logf("searched the host's system trees in %v; %d private entries", time.Since(start), len(found))

	var mine []string
	for _, p := range found {
		if rel, err := filepath.Rel(base, p.path); err == nil && rel[0] != '.' {
			mine = append(mine, rel)
			if p.path == closed && (!p.dir || p.mode != 0o700 || p.uid != os.Getuid()) {
				t.Errorf("entry for the closed directory: %+v", p)
			}
		}
	}
	slices.Sort(mine)
	want := []string{"data", "etc/host.key", "etc/sub/nested.key", "nolist"}
	if !slices.Equal(mine, want) {
		t.Errorf("private entries under %s: %q, want %q", base, mine, want)
	}
}

// FuzzAppendDirents feeds getdents64 buffers, well-formed and not, to the
// parser: it must not panic, and every name it returns must be one a
// directory can hold.
func FuzzAppendDirents(f *testing.F) {
	record := func(ino uint64, kind uint8, name string) []byte {
		reclen := (19 + len(name) + 1 + 7) &^ 7
		b := make([]byte, reclen)
		binary.NativeEndian.PutUint64(b[0:8], ino)
		binary.NativeEndian.PutUint16(b[16:18], uint16(reclen))
		b[18] = kind
		copy(b[19:], name)
		return b
	}
	f.Add(slices.Concat(record(1, unix.DT_DIR, "."), record(2, unix.DT_DIR, ".."),
		record(3, unix.DT_REG, "shadow"), record(0, unix.DT_REG, "deleted"), record(4, unix.DT_LNK, "link")))
	f.Add(record(5, unix.DT_UNKNOWN, "a-rather-long-name-for-a-file.conf"))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, buf []byte) {
		for _, e := range appendDirents(nil, buf) {
			if e.name == "" || e.name == "." || e.name == ".." || strings.ContainsAny(e.name, "/\x00") {
				t.Fatalf("name %q", e.name)
			}
		}
	})
}

// TestCoverPrivateSkipsWhatHasGone: the host keeps changing between the
// search and the covers (temporary files, rotated logs); an entry that has
// gone needs no cover, and must not stop the sandbox from starting.
func TestCoverPrivateSkipsWhatHasGone(t *testing.T) {
	spec := Spec{Dir: t.TempDir()}
	root := t.TempDir()
	gone := []privateEntry{
		{path: "/var/tmp/cordon-gone-directory", dir: true, uid: os.Getuid(), gid: os.Getgid(), mode: 0o700},
		{path: "/var/tmp/cordon-gone-file", mode: 0o600},
	}
	if err := coverPrivate(spec, root, gone); err != nil {
		t.Fatal(err)
	}
}
