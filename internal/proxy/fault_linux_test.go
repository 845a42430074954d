package proxy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/cordon-dev/cordon/internal/audit"
)

// A request log that cannot be written (the disk is full) costs the
// events, not the requests: they go on being served, and what the log
// already held stays readable.
func TestRequestLogFaults(t *testing.T) {
	dir := mountTmpfs(t, "512k")
	log, err := audit.Open(filepath.Join(dir, audit.FileName), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	f := newFaultWorld(t, worldOptions{config: func(c *Config) { c.Audit = log }})

	f.checkServing(t)
	if err := log.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	fill(t, filepath.Join(dir, "filler"))

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { f.checkServing(t) })
	}
	wg.Wait()
	log.Flush(context.Background())

	got, err := log.Query(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[len(got)-1].Path != "/v1/still-serving" {
		t.Errorf("the event stored before the disk filled is gone: %+v", got)
	}
}

// mountTmpfs mounts a small tmpfs over a directory of the test's own, or
// skips the test where it cannot mount.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}
