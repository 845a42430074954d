package audit

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cordon-dev/cordon/internal/testfs"
)

// A full disk: events are dropped and counted, the logger hears once, what
// was stored stays readable, and writing resumes once there is room.
func TestDiskFull(t *testing.T) {
	setQuietPeriod(t, 50*time.Millisecond)
	dir := testfs.MountTmpfs(t, "512k")
	path := filepath.Join(dir, FileName)
	h := &logs{}
	l := openTest(t, path, Options{Logger: slog.New(h)})
	for i := range 10 {
		l.Record(sample(i))
	}
	flush(t, l)

	filler := filepath.Join(dir, "filler")
	testfs.Fill(t, filler)
	big := strings.Repeat("x", maxText)
	start := time.Now()
	for i := range 500 {
		e := sample(100 + i)
		e.Reason = big
		l.Record(e)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("recording into a full disk took %v", d)
	}
	if err := l.Flush(context.Background()); err == nil {
		t.Error("Flush onto a full disk succeeded")
	}
	if l.Dropped() == 0 {
		t.Error("nothing dropped on a full disk")
	}
	if n := h.count(slog.LevelWarn); n != 1 || !strings.Contains(h.String(), "cannot write") {
		t.Errorf("want one warning, got:\n%s", h)
	}

	got, err := l.Query(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 10 || got[0].Path != "/v1/0" || got[9].Path != "/v1/9" {
		t.Errorf("events stored before the disk filled: %v", paths(got))
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	l.Record(sample(1000))
	flush(t, l)
	got, err = l.Query(context.Background(), Filter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Path != "/v1/1000" {
		t.Errorf("after freeing space, the newest event is %v", paths(got))
	}
	if n := h.count(slog.LevelInfo); n != 1 {
		t.Errorf("want one recovery message, got:\n%s", h)
	}
}

// A log on a read-only filesystem cannot be opened for writing: Open fails
// at once with the reason, and reading still works.
func TestReadOnlyFilesystem(t *testing.T) {
	dir := testfs.MountTmpfs(t, "1m")
	path := filepath.Join(dir, FileName)
	l := openTest(t, path, Options{})
	l.Record(sample(1))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}

	if l, err := Open(path, Options{}); err == nil {
		l.Close()
		t.Fatal("Open on a read-only filesystem succeeded")
	} else if !strings.Contains(err.Error(), "read-only file system") {
		t.Errorf("Open: %v", err)
	}

	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := r.Query(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Errorf("read %d events from a read-only log, want 1", len(got))
	}
}
