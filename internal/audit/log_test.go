package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// logs collects what a Log tells its logger.
type logs struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logs) Enabled(context.Context, slog.Level) bool { return true }
func (h *logs) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logs) WithGroup(string) slog.Handler            { return h }
func (h *logs) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}

// count returns how many messages at level were logged.
func (h *logs) count(level slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r.Level == level {
			n++
		}
	}
	return n
}

func (h *logs) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, r := range h.records {
		fmt.Fprintf(&b, "%v %s\n", r.Level, r.Message)
	}
	return b.String()
}

func openTest(t testing.TB, path string, opts Options) *Log {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "state", FileName)
	}
	l, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func flush(t testing.TB, l *Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// setQuietPeriod shortens how long the log waits before it declares a
// failure over.
func setQuietPeriod(t *testing.T, d time.Duration) {
	old := quietPeriod
	quietPeriod = d
	t.Cleanup(func() { quietPeriod = old })
}

// base is a recent time, so that retention keeps the test events.
var base = time.Now().Add(-24 * time.Hour).Truncate(time.Second)

func sample(i int) Event {
	return Event{
		Time:    base.Add(time.Duration(i) * time.Second),
		Sandbox: "box", Method: "GET", Scheme: "https", Host: "api.example.com", Port: 443,
		Path: fmt.Sprintf("/v1/%d", i), Status: 200, Decision: DecisionAllow,
	}
}

func paths(events []Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.Path)
	}
	return out
}

func countRows(t testing.TB, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", dataSource(path, time.Second, readOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRecordAndQuery(t *testing.T) {
	l := openTest(t, "", Options{})
	want := Event{
		Time: base.Add(123456789), Sandbox: "review-bot",
		Method: "POST", Scheme: "https", Host: "llm.internal.example.com", Port: 8443,
		Path: "/v1/chat/completions?stream=", Status: 401, BytesIn: 1234, BytesOut: 56789,
		Duration: 1500 * time.Millisecond, Intercepted: true, Decision: DecisionAllow,
		Rule: "allow llm.internal.example.com", Reason: "", Injected: "",
		NoInject: "no secret for my-llm in this scope",
	}
	l.Record(want)
	flush(t, l)

	got, err := l.Query(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	want.ID = 1
	if diff := cmp.Diff([]Event{want}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if l.Dropped() != 0 {
		t.Errorf("Dropped = %d", l.Dropped())
	}
}

func TestRecordFillsInTime(t *testing.T) {
	l := openTest(t, "", Options{})
	before := time.Now()
	l.Record(Event{Decision: DecisionDeny})
	flush(t, l)
	got, err := l.Query(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Time.Before(before) || got[0].Time.After(time.Now()) {
		t.Errorf("got %+v, want one event timed between the calls", got)
	}
}

func TestFilePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	l := openTest(t, filepath.Join(dir, FileName), Options{})
	l.Record(sample(1))
	flush(t, l)

	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", info.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, entry := range entries {
		info, err := entry.Info()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, entry.Name())
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", entry.Name(), info.Mode().Perm())
		}
	}
	// The -wal and -shm files must have been there to be checked.
	if !slices.Contains(names, FileName+"-wal") || !slices.Contains(names, FileName+"-shm") {
		t.Errorf("files %v: the database is not in WAL mode", names)
	}
}

func TestOpenTightensLooseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	openTest(t, path, Options{})
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", info.Mode().Perm())
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "notdb")
	if err := os.WriteFile(notDB, bytes.Repeat([]byte("not a database "), 512), 0o600); err != nil {
		t.Fatal(err)
	}
	newer := filepath.Join(dir, "newer.db")
	db, err := sql.Open("sqlite", newer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, path, want string
	}{
		{"not a database", notDB, "not a database"},
		{"newer schema", newer, "schema version 99 is newer than this cordon reads (1)"},
		{"a directory", filepath.Join(dir, "adir"), "is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Open(tt.path, Options{})
			if err == nil {
				l.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open: %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := OpenReader(newer); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("OpenReader on a newer log: %v", err)
	}
}

func TestRetentionByRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l := openTest(t, path, Options{MaxRows: 100})
	for i := range 1000 {
		l.Record(sample(i))
		if i%97 == 0 {
			flush(t, l)
		}
	}
	flush(t, l)

	got, err := l.Query(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 || got[0].Path != "/v1/900" || got[99].Path != "/v1/999" {
		t.Fatalf("kept %d events, %v ... %v; want the newest 100", len(got), got[0].Path, got[len(got)-1].Path)
	}

	// IDs are not reused after retention, so a follower never misses one.
	l.Record(sample(1000))
	flush(t, l)
	last, err := l.LastID(context.Background())
	if err != nil || last != 1001 {
		t.Errorf("LastID = %d, %v; want 1001", last, err)
	}
}

func TestRetentionByAge(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	now := time.Now()
	l := openTest(t, path, Options{})
	const day = 24 * time.Hour
	for _, age := range []time.Duration{90 * day, 31 * day, 29 * day, time.Minute} {
		e := sample(0)
		e.Time = now.Add(-age)
		e.Path = age.String()
		l.Record(e)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Retention runs when the log is opened.
	l = openTest(t, path, Options{MaxAge: 30 * day})
	flush(t, l)
	got, err := l.Query(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{(29 * day).String(), time.Minute.String()}
	if diff := cmp.Diff(want, paths(got)); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
}

// The log never holds a query value: recording targets built with
// RedactTarget leaves no trace of the values in any of the database's
// files, while the rest of the target is there.
func TestNoQueryValueStored(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	l := openTest(t, path, Options{})
	secrets := []string{"AIzaSyTOPSECRETVALUE1", "sk-live-TOPSECRETVALUE2", "TOPSECRETVALUE3"}
	targets := [][2]string{
		{"/v1beta/models/gemini:generateContent", "key=" + secrets[0] + "&alt=sse"},
		{"/v1/chat", "api_key=" + secrets[1]},
		{"/download", "X-Amz-Signature=" + secrets[2] + "&X-Amz-Expires=300"},
		{"/bare", secrets[1]},
	}
	for i := range 200 {
		tg := targets[i%len(targets)]
		e := sample(i)
		e.Path = RedactTarget(tg[0], tg[1])
		l.Record(e)
	}
	flush(t, l)

	check := func(when string) {
		var all []byte
		matches, _ := filepath.Glob(path + "*")
		for _, m := range matches {
			data, err := os.ReadFile(m)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, data...)
		}
		if bytes.Contains(all, []byte("TOPSECRETVALUE")) {
			t.Errorf("%s: part of a secret found in the database files", when)
		}
		for _, s := range secrets {
			if bytes.Contains(all, []byte(s)) {
				t.Errorf("%s: %q found in the database files %v", when, s, matches)
			}
		}
		if !bytes.Contains(all, []byte("/v1beta/models/gemini:generateContent?key=&alt=")) {
			t.Errorf("%s: the recorded target is not in the files %v: the check looks in the wrong place",
				when, matches)
		}
	}
	check("while open")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	check("after close")
}

// A flood beyond the queue: Record never blocks, the excess is counted,
// nothing stored before is lost, and the logger hears once per episode.
func TestFloodDrops(t *testing.T) {
	setQuietPeriod(t, 50*time.Millisecond)
	path := filepath.Join(t.TempDir(), FileName)
	h := &logs{}
	l := openTest(t, path, Options{QueueSize: 64, Logger: slog.New(h)})
	for i := range 10 {
		l.Record(sample(i))
	}
	flush(t, l)

	flood := func(round int) {
		// Another process holding the write lock stalls the writer, so the
		// queue cannot drain while the flood lasts.
		release := holdWriteLock(t, path)
		start := time.Now()
		for i := range 10_000 {
			e := sample(i)
			e.Sandbox = fmt.Sprintf("flood%d", round)
			l.Record(e)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("10000 Record calls took %v", d)
		}
		release()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.Flush(ctx); err == nil || !strings.HasSuffix(err.Error(), " events dropped") {
			t.Errorf("Flush after a flood: %v, want a count of dropped events", err)
		}
	}

	flood(1)
	dropped := l.Dropped()
	if dropped < 10_000-64-maxBatch || dropped >= 10_000 {
		t.Errorf("Dropped = %d after 10000 events into a queue of 64", dropped)
	}
	if n := h.count(slog.LevelWarn); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, h)
	}
	got, err := l.Query(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10+10_000-int(dropped) {
		t.Errorf("%d events stored, want %d", len(got), 10+10_000-int(dropped))
	}
	want := paths([]Event{sample(0), sample(9)})
	if diff := cmp.Diff(want, []string{got[0].Path, got[9].Path}); diff != "" {
		t.Errorf("events stored before the flood: (-want +got):\n%s", diff)
	}

	// Once the log has written for a while with nothing dropped, it says
	// so, and a second flood is reported again.
	time.Sleep(60 * time.Millisecond)
	l.Record(sample(0))
	flush(t, l)
	if n := h.count(slog.LevelInfo); n != 1 {
		t.Errorf("%d recovery messages, want 1:\n%s", n, h)
	}
	flood(2)
	if n := h.count(slog.LevelWarn); n != 2 {
		t.Errorf("%d warnings after a second flood, want 2:\n%s", n, h)
	}
}

// holdWriteLock takes the database's write lock through a connection of
// its own, as another proxy process would, until release is called.
func holdWriteLock(t testing.TB, path string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite", dataSource(path, time.Second, readWrite))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		tx.Rollback()
		db.Close()
	}
}

// A lock held past the busy timeout: the batch is dropped and counted, the
// logger hears once, and writing resumes when the lock is released.
func TestLockedTooLong(t *testing.T) {
	setQuietPeriod(t, 50*time.Millisecond)
	path := filepath.Join(t.TempDir(), FileName)
	h := &logs{}
	l := openTest(t, path, Options{BusyTimeout: 50 * time.Millisecond, Logger: slog.New(h)})
	l.Record(sample(1))
	flush(t, l)

	release := holdWriteLock(t, path)
	for i := 2; i < 5; i++ {
		l.Record(sample(i))
		err := l.Flush(context.Background())
		if err == nil || !strings.HasSuffix(err.Error(), ": 1 event dropped") {
			t.Errorf("Flush with the database locked: %v", err)
		}
	}
	release()
	if l.Dropped() != 3 {
		t.Errorf("Dropped = %d, want 3", l.Dropped())
	}
	if n := h.count(slog.LevelWarn); n != 1 || !strings.Contains(h.String(), "cannot write") {
		t.Errorf("want one warning that writing failed, got:\n%s", h)
	}

	time.Sleep(60 * time.Millisecond)
	l.Record(sample(5))
	flush(t, l)
	got, err := l.Query(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/v1/1", "/v1/5"}, paths(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if n := h.count(slog.LevelInfo); n != 1 {
		t.Errorf("want one recovery message, got:\n%s", h)
	}
}

// A database that refuses writes (here made query-only, as a read-only
// file would be) drops events without disturbing what is stored.
func TestReadOnlyDatabase(t *testing.T) {
	setQuietPeriod(t, 50*time.Millisecond)
	h := &logs{}
	l := openTest(t, "", Options{Logger: slog.New(h)})
	l.Record(sample(1))
	flush(t, l)

	if _, err := l.db.Exec("PRAGMA query_only = 1"); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < 10; i++ {
		l.Record(sample(i))
	}
	if err := l.Flush(context.Background()); err == nil {
		t.Error("Flush into a read-only database succeeded")
	}
	if l.Dropped() != 8 {
		t.Errorf("Dropped = %d, want 8", l.Dropped())
	}
	if n := h.count(slog.LevelWarn); n != 1 || !strings.Contains(h.String(), "cannot write") {
		t.Errorf("want one warning, got:\n%s", h)
	}

	if _, err := l.db.Exec("PRAGMA query_only = 0"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	l.Record(sample(10))
	flush(t, l)
	got, err := l.Query(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/v1/1", "/v1/10"}, paths(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestRecordAfterClose(t *testing.T) {
	l := openTest(t, "", Options{})
	l.Record(sample(1))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Record(sample(2))
	if l.Dropped() != 1 {
		t.Errorf("Dropped = %d, want 1", l.Dropped())
	}
	if err := l.Flush(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := countRows(t, l.Path()); n != 1 {
		t.Errorf("%d rows, want the one recorded before Close", n)
	}
}

// Close writes what is still queued.
func TestCloseWritesQueue(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l := openTest(t, path, Options{})
	for i := range 2000 {
		l.Record(sample(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, path); n != 2000 {
		t.Errorf("%d rows after Close, want 2000", n)
	}
}

// BenchmarkRecord measures what the proxy pays per request. "queued" is
// an event accepted into the queue, with a consumer that keeps the queue
// from filling (the writer's database work is not the caller's cost);
// "full" is an event dropped because the writer is stalled.
func BenchmarkRecord(b *testing.B) {
	e := sample(1)
	e.Path = "/v1/chat/completions?stream="
	e.Injected = "openai"

	b.Run("queued", func(b *testing.B) {
		l := &Log{queue: make(chan item, DefaultQueueSize), logger: slog.New(slog.DiscardHandler)}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for it := range l.queue {
				_ = it
			}
		}()
		b.ReportAllocs()
		for b.Loop() {
			l.Record(e)
		}
		close(l.queue)
		<-done
		// The consumer should keep up; if it did not, the figure mixes in
		// the cost of dropping.
		b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
	})

	b.Run("full", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), FileName)
		l := openTest(b, path, Options{QueueSize: 16, BusyTimeout: time.Minute})
		release := holdWriteLock(b, path)
		defer release()
		for range 16 + maxBatch {
			l.Record(e)
		}
		b.ReportAllocs()
		for b.Loop() {
			l.Record(e)
		}
		b.StopTimer()
		if l.Dropped() == 0 {
			b.Error("nothing dropped")
		}
	})
}

// BenchmarkWrite measures how many events per second the writer stores,
// with one process writing.
func BenchmarkWrite(b *testing.B) {
	l := openTest(b, "", Options{})
	e := sample(1)
	e.Path = "/v1/chat/completions?stream="
	e.Injected = "openai"
	start := time.Now()
	for i := range b.N {
		l.Record(e)
		if i%4096 == 4095 {
			flush(b, l)
		}
	}
	flush(b, l)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	if l.Dropped() != 0 {
		b.Fatalf("%d events dropped", l.Dropped())
	}
}
