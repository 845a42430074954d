package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Defaults for Options.
const (
	DefaultMaxAge      = 30 * 24 * time.Hour
	DefaultMaxRows     = 1_000_000
	DefaultQueueSize   = 8192
	DefaultBusyTimeout = 5 * time.Second
)

// Options tune a Log. The zero value gives the defaults.
type Options struct {
	// MaxAge is how long an event is kept; older ones are deleted.
	MaxAge time.Duration

	// MaxRows bounds the number of events kept; the oldest are deleted.
	// The bound is enforced after every MaxRows/100 inserts, so the table
	// can hold up to that many more (plus one batch) in between.
	MaxRows int

	// QueueSize is how many events may wait to be written. Record drops
	// what does not fit.
	QueueSize int

	// BusyTimeout is how long a write waits for another process holding
	// the database's write lock before its events are dropped.
	BusyTimeout time.Duration

	// Logger hears when events start being dropped and when writing
	// works again. nil discards those messages.
	Logger *slog.Logger
}

func (o *Options) fill() {
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxRows <= 0 {
		o.MaxRows = DefaultMaxRows
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Tuning of the writer.
const (
	maxBatch = 512 // events per write transaction
	// batchLinger is how long the writer gathers events before writing
	// them; the log runs this far behind at most, in exchange for
	// writing steady traffic in a few transactions a second.
	batchLinger = 50 * time.Millisecond
	maxText     = 4096            // bytes kept of a path, reason or other text field
	pruneChunk  = 5000            // rows deleted per transaction by retention
	closeWait   = 5 * time.Second // how long Close waits for queued events
)

// Timings of the writer, shortened by tests.
var (
	// pruneInterval is the longest the writer goes without applying
	// retention while it is writing.
	pruneInterval = time.Minute

	// quietPeriod is how long after the last dropped event the log must
	// have written successfully, with nothing waiting, before it counts as
	// recovered. It keeps a log that keeps overflowing from announcing
	// every brief recovery.
	quietPeriod = 5 * time.Second
)

// ErrClosed is returned by Flush on a closed Log.
var ErrClosed = errors.New("request log is closed")

// Log writes events to the request log. Its methods are safe for
// concurrent use; Record is meant to be called by the proxy for every
// request and never blocks. Other processes may write to the same file
// through Logs of their own.
//
// When events start being dropped, the first drop is logged at warning
// level (from the goroutine that hit it: the caller of Record, when the
// queue is full); further drops are only counted until the log has written
// successfully with nothing dropped for a few seconds, which is logged at
// info level and ends the episode.
type Log struct {
	path   string
	opts   Options
	logger *slog.Logger
	db     *sql.DB // the writer's one connection
	reader *Reader // a separate read-only pool, so queries never wait for writes

	queue    chan item
	closed   atomic.Bool
	stop     chan struct{} // closed by Close: drain the queue and exit
	done     chan struct{} // closed when the writer has exited
	abort    context.CancelFunc
	once     sync.Once
	closeErr error

	dropped  atomic.Uint64
	failing  atomic.Bool  // events have been dropped and no recovery seen since
	lastDrop atomic.Int64 // when an event was last dropped, in Unix nanoseconds

	// Owned by the writer goroutine.
	sincePrune    int
	lastPrune     time.Time
	lastWriteOK   bool
	droppedBefore uint64 // Dropped() at the last flush
	stopping      bool   // Close was called while a batch was gathering
}

// item is an event or, when flush is set, a request to report once
// everything queued before it has been handled.
type item struct {
	event Event
	flush chan error
}

// Open opens the request log at path for writing, creating the file (0600)
// and any missing directories (0700), and applies retention. Close it to
// write what is still queued.
func Open(path string, opts Options) (*Log, error) {
	opts.fill()
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("opening request log: %w", err)
	}
	// A missing directory is made owner-only; an existing one is left as
	// it is (cordon's state directory is already 0700).
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("opening request log: %w", err)
	}
	if err := createPrivate(abs); err != nil {
		return nil, fmt.Errorf("opening request log: %w", err)
	}

	db, err := sql.Open("sqlite", dataSource(abs, opts.BusyTimeout, readWrite))
	if err != nil {
		return nil, fmt.Errorf("opening request log %s: %w", abs, err)
	}
	// One connection, kept open: writes are serialised by the writer
	// goroutine anyway, and SQLite's WAL files stay in place between them.
	db.SetMaxOpenConns(1)
	ctx, abort := context.WithCancel(context.Background())
	if err := migrate(ctx, db); err != nil {
		abort()
		db.Close()
		return nil, fmt.Errorf("opening request log %s: %w", abs, err)
	}

	l := &Log{
		path:        abs,
		opts:        opts,
		logger:      opts.Logger,
		db:          db,
		reader:      &Reader{path: abs},
		queue:       make(chan item, opts.QueueSize),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
		abort:       abort,
		lastWriteOK: true,
	}
	go l.run(ctx)
	return l, nil
}

// createPrivate creates the database file with mode 0600 before SQLite
// opens it: SQLite would create it world-readable, and gives its -wal and
// -shm files the mode of the database file. An existing file with looser
// permissions is tightened.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return f.Chmod(0o600)
	}
	return nil
}

// Path returns the absolute path of the database file.
func (l *Log) Path() string { return l.path }

// Record queues e to be written. It never blocks and does no database work
// on the caller's goroutine: when the queue is full, or after Close, the
// event is dropped and counted in Dropped.
func (l *Log) Record(e Event) {
	if l.closed.Load() {
		l.drop(1, "request log closed", nil)
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	select {
	case l.queue <- item{event: e}:
	default:
		l.drop(1, "request log queue full: dropping events until the writer catches up", nil)
	}
}

// Dropped returns how many events have been dropped since Open, because
// the queue was full or the database could not be written.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Flush waits until every event recorded before the call has been written
// or dropped. It returns an error when events were dropped since the
// previous Flush, or when ctx ends first.
func (l *Log) Flush(ctx context.Context) error {
	if l.closed.Load() {
		return ErrClosed
	}
	reply := make(chan error, 1)
	select {
	case l.queue <- item{flush: reply}:
	case <-l.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-l.done:
		// Close drained the queue, and answered the flush there.
		select {
		case err := <-reply:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what is queued, waiting up to a few seconds (plus the busy
// timeout when another process holds the database), and closes the
// database. Events still queued after that are dropped. It returns an
// error when events were dropped since the last Flush. Record after Close
// drops the event.
func (l *Log) Close() error {
	l.once.Do(func() {
		l.closed.Store(true)
		close(l.stop)
		select {
		case <-l.done:
		case <-time.After(closeWait):
			l.abort()
			<-l.done
		}
		l.abort()

		// A Record or Flush that raced with Close may have queued an item
		// after the writer's last look.
		for len(l.queue) > 0 {
			if it := <-l.queue; it.flush != nil {
				it.flush <- ErrClosed
			} else {
				l.dropped.Add(1)
			}
		}
		err := l.droppedError()
		for _, cerr := range []error{l.reader.Close(), l.db.Close()} {
			if cerr != nil && err == nil {
				err = fmt.Errorf("closing request log: %w", cerr)
			}
		}
		l.closeErr = err
	})
	return l.closeErr
}

// drop counts n lost events and, if the log was not already failing,
// says so once.
func (l *Log) drop(n int, msg string, err error) {
	total := l.dropped.Add(uint64(n))
	l.lastDrop.Store(time.Now().UnixNano())
	if !l.failing.CompareAndSwap(false, true) {
		return
	}
	attrs := []any{"path", l.path, "dropped", total}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	l.logger.Warn(msg, attrs...)
}

// droppedError reports the events dropped since the last flush, and
// makes them reported.
func (l *Log) droppedError() error {
	now := l.dropped.Load()
	n := now - l.droppedBefore
	l.droppedBefore = now
	if n == 0 {
		return nil
	}
	if n == 1 {
		return fmt.Errorf("request log %s: 1 event dropped", l.path)
	}
	return fmt.Errorf("request log %s: %d events dropped", l.path, n)
}

// run is the writer goroutine: it takes events off the queue in batches,
// writes each batch in one transaction and applies retention.
func (l *Log) run(ctx context.Context) {
	defer close(l.done)
	l.prune(ctx)

	batch := make([]Event, 0, maxBatch)
	var flushes []chan error
	recheck := time.NewTimer(time.Hour)
	recheck.Stop()

	// take adds one queued item to the batch, and says whether the batch
	// should be written now.
	take := func(it item) bool {
		if it.flush != nil {
			flushes = append(flushes, it.flush)
			return true
		}
		batch = append(batch, it.event)
		return len(batch) == maxBatch
	}
	commit := func() {
		if len(batch) > 0 {
			l.write(ctx, batch)
			clear(batch)
			batch = batch[:0]
		}
		for _, reply := range flushes {
			reply <- l.droppedError()
		}
		flushes = flushes[:0]
		if l.failing.Load() && !l.checkRecovered() && l.lastWriteOK {
			recheck.Reset(quietPeriod)
		}
	}

	for {
		select {
		case it := <-l.queue:
			// Gather what arrives over a short while, so that steady
			// traffic is written in few transactions: a commit costs far
			// more than a row. A flush request ends the wait at once.
			full := take(it)
			linger := time.NewTimer(batchLinger)
		gather:
			for !full {
				select {
				case it := <-l.queue:
					full = take(it)
				case <-linger.C:
					break gather
				case <-l.stop:
					linger.Stop()
					l.stopping = true
					break gather
				}
			}
			linger.Stop()
			commit()
			if l.stopping {
				for len(l.queue) > 0 {
					if take(<-l.queue) {
						commit()
					}
				}
				commit()
				return
			}

		case <-recheck.C:
			if !l.checkRecovered() && l.lastWriteOK {
				recheck.Reset(quietPeriod)
			}

		case <-l.stop:
			for len(l.queue) > 0 {
				if take(<-l.queue) {
					commit()
				}
			}
			commit()
			return
		}
	}
}

// checkRecovered ends a failure episode when the last write worked, nothing is
// waiting and nothing was dropped for quietPeriod. It reports whether the
// log is now healthy.
func (l *Log) checkRecovered() bool {
	if !l.failing.Load() {
		return true
	}
	quiet := time.Since(time.Unix(0, l.lastDrop.Load())) >= quietPeriod
	if !l.lastWriteOK || len(l.queue) > 0 || !quiet {
		return false
	}
	if l.failing.CompareAndSwap(true, false) {
		l.logger.Info("request log is being written again", "path", l.path, "dropped", l.dropped.Load())
	}
	return true
}

// write stores batch in one transaction, retrying a few times when another
// process held the lock past the busy timeout, and drops it when that or
// anything else fails.
func (l *Log) write(ctx context.Context, batch []Event) {
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		if err = l.insert(ctx, batch); err == nil || !isBusy(err) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		l.lastWriteOK = false
		l.drop(len(batch), "cannot write the request log: dropping events until it can", err)
		return
	}
	l.lastWriteOK = true

	l.sincePrune += len(batch)
	if l.sincePrune >= max(l.opts.MaxRows/100, 1) || time.Since(l.lastPrune) >= pruneInterval {
		l.prune(ctx)
	}
}

func (l *Log) insert(ctx context.Context, batch []Event) error {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Rows go in groups of insertRows per statement: SQLite's own work per
	// row is the same, but the statement and driver overhead is paid once
	// per group instead of once per row.
	var full *sql.Stmt
	args := make([]any, 0, insertRows*eventFields)
	for len(batch) > 0 {
		n := min(len(batch), insertRows)
		stmt := full
		if stmt == nil || n < insertRows { // the remainder comes last, once
			if stmt, err = tx.PrepareContext(ctx, insertStatement(n)); err != nil {
				return err
			}
			defer stmt.Close()
			if n == insertRows {
				full = stmt
			}
		}
		args = args[:0]
		for i := range batch[:n] {
			e := &batch[i]
			args = append(args, e.Time.UnixNano(), clip(e.Sandbox), clip(e.Method),
				clip(e.Scheme), clip(e.Host), e.Port, clip(e.Path), e.Status, e.BytesIn, e.BytesOut,
				int64(e.Duration), e.Intercepted, clip(e.Decision), clip(e.Rule), clip(e.Reason),
				clip(e.Injected), clip(e.NoInject))
		}
		if _, err := stmt.ExecContext(ctx, args...); err != nil {
			return err
		}
		batch = batch[n:]
	}
	return tx.Commit()
}

// clip bounds a text field, so that one odd request (a path of a megabyte)
// cannot bloat the log. It cuts on a character boundary.
func clip(s string) string {
	if len(s) <= maxText {
		return s
	}
	i := maxText
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// prune deletes events older than MaxAge and all but the newest MaxRows,
// a chunk per transaction so that other writers are not kept waiting. A
// failure is left for the next round: writes report their own failures.
func (l *Log) prune(ctx context.Context) {
	l.sincePrune = 0
	l.lastPrune = time.Now()
	cutoff := time.Now().Add(-l.opts.MaxAge).UnixNano()
	err := l.deleteChunks(ctx, `DELETE FROM events WHERE id IN
		(SELECT id FROM events WHERE time < ? LIMIT ?)`, cutoff)
	if err == nil {
		// IDs are never reused, so the newest MaxRows events all have an
		// ID above last-MaxRows.
		var last sql.NullInt64
		err = l.db.QueryRowContext(ctx, "SELECT max(id) FROM events").Scan(&last)
		if err == nil && last.Int64 > int64(l.opts.MaxRows) {
			err = l.deleteChunks(ctx, `DELETE FROM events WHERE id IN
				(SELECT id FROM events WHERE id <= ? ORDER BY id LIMIT ?)`,
				last.Int64-int64(l.opts.MaxRows))
		}
	}
	if err != nil {
		l.logger.Debug("applying request log retention", "path", l.path, "err", err)
	}
}

func (l *Log) deleteChunks(ctx context.Context, query string, arg int64) error {
	for {
		tx, err := l.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, query, arg, pruneChunk)
		if err == nil {
			err = tx.Commit()
		}
		if err != nil {
			tx.Rollback()
			return err
		}
		if n, _ := res.RowsAffected(); n < pruneChunk {
			return nil
		}
	}
}

// Query returns the events that match f, oldest first; see Reader.Query.
func (l *Log) Query(ctx context.Context, f Filter) ([]Event, error) {
	return l.reader.Query(ctx, f)
}

// Summary groups the events that match f; see Reader.Summary.
func (l *Log) Summary(ctx context.Context, f Filter) ([]Group, error) {
	return l.reader.Summary(ctx, f)
}

// LastID returns the ID of the newest event stored, or 0; see Reader.LastID.
func (l *Log) LastID(ctx context.Context) (int64, error) {
	return l.reader.LastID(ctx)
}

// Follow calls fn for each new event that matches f; see Reader.Follow.
func (l *Log) Follow(ctx context.Context, f Filter, fn func(Event) error) error {
	return l.reader.Follow(ctx, f, fn)
}
