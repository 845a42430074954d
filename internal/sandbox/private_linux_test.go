package sandbox

import (
	"os"
	"path/filepath"
	"slices"
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
