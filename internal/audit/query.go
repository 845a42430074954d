package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// pollInterval is how often Follow looks for new events. Writers are
// usually other processes, so there is nothing to wait on but the file.
var pollInterval = 200 * time.Millisecond

// readPage is how many events Each and Follow read in one query.
const readPage = 1000

// Filter selects events. The zero value selects every event.
type Filter struct {
	Sandbox   string    // only this sandbox's events; "" for every sandbox and the global scope
	Decisions []string  // only these decisions; empty for all
	Since     time.Time // only events that started at or after this time
	AfterID   int64     // only events with a greater ID
	Limit     int       // only the newest Limit of the matching events; 0 for all

	upTo int64 // only events with an ID at most this; 0 for no bound
}

// where renders the filter as an SQL condition with its arguments.
func (f Filter) where() (string, []any) {
	conds := []string{"1"}
	var args []any
	if f.Sandbox != "" {
		conds = append(conds, "sandbox = ?")
		args = append(args, f.Sandbox)
	}
	if len(f.Decisions) > 0 {
		conds = append(conds, "decision IN (?"+strings.Repeat(", ?", len(f.Decisions)-1)+")")
		for _, d := range f.Decisions {
			args = append(args, d)
		}
	}
	if !f.Since.IsZero() {
		conds = append(conds, "time >= ?")
		args = append(args, f.Since.UnixNano())
	}
	if f.AfterID > 0 {
		conds = append(conds, "id > ?")
		args = append(args, f.AfterID)
	}
	if f.upTo > 0 {
		conds = append(conds, "id <= ?")
		args = append(args, f.upTo)
	}
	return strings.Join(conds, " AND "), args
}

// selected returns the query for the filtered events' columns, with the
// newest Limit of them when a limit is set, in no particular order.
func (f Filter) selected(cols string) (string, []any) {
	where, args := f.where()
	query := "SELECT " + cols + " FROM events WHERE " + where
	if f.Limit > 0 {
		query += " ORDER BY id DESC LIMIT ?"
		args = append(args, f.Limit)
	}
	return query, args
}

// Group is a set of events with the same sandbox, destination, decision,
// rule, reason and credential outcome, as `cordon policy log` shows them.
type Group struct {
	Sandbox  string
	Host     string
	Port     int
	Decision string
	Rule     string
	Reason   string
	Injected string
	NoInject string
	Count    int64
	Last     time.Time // when the newest event in the group started
	LastID   int64     // the newest event's ID
}

// Reader reads a request log, written by this process or others. Its
// methods are safe for concurrent use.
type Reader struct {
	path string

	mu      sync.Mutex
	db      *sql.DB // nil until the file exists
	version int     // the schema version, once the writer has created it
}

// OpenReader opens the request log at path for reading. A log that does not
// exist yet is not an error: it reads as empty, and Follow waits for it.
// The file is opened read-only and never created.
func OpenReader(path string) (*Reader, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("opening request log: %w", err)
	}
	r := &Reader{path: abs}
	if _, err := r.handle(context.Background()); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Close releases the database.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.db == nil {
		return nil
	}
	err := r.db.Close()
	r.db = nil
	return err
}

// handle returns the database, opening it when the file has appeared, or
// nil when there is nothing to read yet.
func (r *Reader) handle(ctx context.Context) (*sql.DB, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.db == nil {
		if _, err := os.Stat(r.path); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		} else if err != nil {
			return nil, fmt.Errorf("opening request log: %w", err)
		}
		mode := readOnly
		if unix.Access(filepath.Dir(r.path), unix.W_OK) == unix.EROFS {
			mode = readFrozen
		}
		db, err := sql.Open("sqlite", dataSource(r.path, DefaultBusyTimeout, mode))
		if err != nil {
			return nil, fmt.Errorf("opening request log %s: %w", r.path, err)
		}
		r.db = db
	}
	if r.version == 0 {
		version, err := readVersion(ctx, r.db)
		if err != nil {
			return nil, fmt.Errorf("reading request log %s: %w", r.path, err)
		}
		if version == 0 {
			return nil, nil
		}
		r.version = version
	}
	return r.db, nil
}

// Query returns the events that match f, oldest first. With f.Limit set,
// they are the newest f.Limit matching events.
func (r *Reader) Query(ctx context.Context, f Filter) ([]Event, error) {
	var events []Event
	err := r.Each(ctx, f, func(e Event) error {
		events = append(events, e)
		return nil
	})
	return events, err
}

// Each calls fn for each event that matches f, oldest first, without
// holding them all in memory. Events stored after Each started are left
// out. It stops at the first error fn returns and returns it.
func (r *Reader) Each(ctx context.Context, f Filter, fn func(Event) error) error {
	db, err := r.handle(ctx)
	if db == nil || err != nil {
		return err
	}
	if f.upTo, err = lastID(ctx, db); f.upTo == 0 || err != nil {
		return r.readError(err)
	}
	if f.Limit > 0 {
		// Start just before the oldest of the newest Limit events.
		where, args := f.where()
		var first int64
		err := db.QueryRowContext(ctx, "SELECT id FROM events WHERE "+where+
			" ORDER BY id DESC LIMIT 1 OFFSET ?", append(args, f.Limit-1)...).Scan(&first)
		switch {
		case errors.Is(err, sql.ErrNoRows): // fewer match: all of them
		case err != nil:
			return r.readError(err)
		default:
			f.AfterID = max(f.AfterID, first-1)
		}
		f.Limit = 0
	}
	_, err = r.pages(ctx, f, fn)
	return err
}

// Summary groups the events that match f (the newest f.Limit of them, with
// a limit) by sandbox, host, port, decision, rule, reason and credential
// outcome, in that order.
func (r *Reader) Summary(ctx context.Context, f Filter) ([]Group, error) {
	db, err := r.handle(ctx)
	if db == nil || err != nil {
		return nil, err
	}
	const key = "sandbox, host, port, decision, rule, reason, injected, no_inject"
	inner, args := f.selected("id, time, " + key)
	query := "SELECT " + key + ", count(*), max(time), max(id) FROM (" + inner +
		") GROUP BY " + key + " ORDER BY " + key
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, r.readError(err)
	}
	defer rows.Close()
	var groups []Group
	for rows.Next() {
		var g Group
		var last int64
		if err := rows.Scan(&g.Sandbox, &g.Host, &g.Port, &g.Decision, &g.Rule, &g.Reason,
			&g.Injected, &g.NoInject, &g.Count, &last, &g.LastID); err != nil {
			return nil, r.readError(err)
		}
		g.Last = time.Unix(0, last)
		groups = append(groups, g)
	}
	return groups, r.readError(rows.Err())
}

// LastID returns the ID of the newest event stored, or 0 when there is
// none. Following from it shows only events written afterwards.
func (r *Reader) LastID(ctx context.Context) (int64, error) {
	db, err := r.handle(ctx)
	if db == nil || err != nil {
		return 0, err
	}
	id, err := lastID(ctx, db)
	return id, r.readError(err)
}

func lastID(ctx context.Context, db *sql.DB) (int64, error) {
	var id int64
	err := db.QueryRowContext(ctx, "SELECT coalesce(max(id), 0) FROM events").Scan(&id)
	return id, err
}

// Follow calls fn, oldest first, for every event that matches f and has an
// ID above f.AfterID (so 0 means from the first event ever stored; pass
// LastID for only new ones), including events written after Follow
// started, by this process or any other. It looks for new events every
// 200ms, and waits for a log that does not exist yet. f.Limit is ignored.
// Follow returns ctx.Err() when ctx ends, or the first error fn returns.
func (r *Reader) Follow(ctx context.Context, f Filter, fn func(Event) error) error {
	f.Limit = 0
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		last, err := r.pages(ctx, f, fn)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		f.AfterID = last
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// pages calls fn for the events that match f, oldest first, reading them a
// page at a time. No read stays open while fn runs: a long one would keep
// writers from checkpointing the write-ahead log, which would then grow.
// It returns the ID of the last event passed to fn, or f.AfterID.
func (r *Reader) pages(ctx context.Context, f Filter, fn func(Event) error) (int64, error) {
	for {
		page, err := r.page(ctx, f)
		if err != nil {
			return f.AfterID, err
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return f.AfterID, err
			}
			f.AfterID = e.ID
		}
		if len(page) < readPage {
			return f.AfterID, nil
		}
	}
}

// page reads up to readPage events that match f, oldest first. f.Limit
// must be zero.
func (r *Reader) page(ctx context.Context, f Filter) ([]Event, error) {
	db, err := r.handle(ctx)
	if db == nil || err != nil {
		return nil, err
	}
	where, args := f.where()
	rows, err := db.QueryContext(ctx, "SELECT "+columns+" FROM events WHERE "+where+
		" ORDER BY id LIMIT ?", append(args, readPage)...)
	if err != nil {
		return nil, r.readError(err)
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, r.readError(err)
		}
		events = append(events, e)
	}
	return events, r.readError(rows.Err())
}

func (r *Reader) readError(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("reading request log %s: %w", r.path, err)
}

func scanEvent(rows *sql.Rows) (Event, error) {
	var e Event
	var start, duration int64
	err := rows.Scan(&e.ID, &start, &e.Sandbox, &e.Method, &e.Scheme, &e.Host, &e.Port,
		&e.Path, &e.Status, &e.BytesIn, &e.BytesOut, &duration, &e.Intercepted, &e.Decision,
		&e.Rule, &e.Reason, &e.Injected, &e.NoInject)
	e.Time = time.Unix(0, start)
	e.Duration = time.Duration(duration)
	return e, err
}
