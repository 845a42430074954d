package proxy

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cordon-dev/cordon/internal/audit"
	"github.com/cordon-dev/cordon/internal/testfs"
)

// A request log that cannot be written (the disk is full) costs the
// events, not the requests: they go on being served, and what the log
// already held stays readable.
func TestRequestLogFaults(t *testing.T) {
	dir := testfs.MountTmpfs(t, "512k")
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
	testfs.Fill(t, filepath.Join(dir, "filler"))

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
