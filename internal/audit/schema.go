package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// schemaVersion is the layout of the database, kept in PRAGMA user_version.
// A log with a higher version was written by a newer cordon and is refused
// rather than misread.
const schemaVersion = 1

// schema creates version 1. Times and durations are integer nanoseconds.
// AUTOINCREMENT keeps IDs from ever being reused once retention has deleted
// the newest rows, so a reader that polls for "id > last" cannot miss or
// repeat an event.
const schema = `
CREATE TABLE IF NOT EXISTS events (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	time        INTEGER NOT NULL,
	sandbox     TEXT    NOT NULL,
	method      TEXT    NOT NULL,
	scheme      TEXT    NOT NULL,
	host        TEXT    NOT NULL,
	port        INTEGER NOT NULL,
	path        TEXT    NOT NULL,
	status      INTEGER NOT NULL,
	bytes_in    INTEGER NOT NULL,
	bytes_out   INTEGER NOT NULL,
	duration    INTEGER NOT NULL,
	intercepted INTEGER NOT NULL,
	decision    TEXT    NOT NULL,
	rule        TEXT    NOT NULL,
	reason      TEXT    NOT NULL,
	injected    TEXT    NOT NULL,
	no_inject   TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_sandbox ON events (sandbox, id);
CREATE INDEX IF NOT EXISTS events_decision ON events (decision, id);
PRAGMA user_version = 1;
`

// columns lists the stored fields in the order scanEvent reads them.
const columns = `id, time, sandbox, method, scheme, host, port, path, status,
	bytes_in, bytes_out, duration, intercepted, decision, rule, reason,
	injected, no_inject`

// eventFields is the number of values insertStatement takes per row.
const eventFields = 17

// insertRows is how many events one INSERT statement stores at most.
const insertRows = 32

// insertStatement returns an INSERT of n events.
func insertStatement(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO events (time, sandbox, method, scheme, host,
	port, path, status, bytes_in, bytes_out, duration, intercepted, decision,
	rule, reason, injected, no_inject) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	return b.String()
}

// walSizeLimit is what the write-ahead log is truncated to after a
// checkpoint, so that a burst of writes does not leave a large file behind.
const walSizeLimit = 16 << 20

// How dataSource opens the database.
type openMode int

const (
	readWrite  openMode = iota
	readOnly            // SQLite's read-only mode, which never creates the file
	readFrozen          // read-only and assumed unchanging: for read-only media
)

// dataSource builds the driver's name for the database at path (which must
// be absolute).
func dataSource(path string, busyTimeout time.Duration, mode openMode) string {
	// The name is a URI so that a '?' or '#' in the path cannot be taken
	// for the start of the parameters.
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	params := []string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()),
	}
	switch mode {
	case readOnly:
		params = append(params, "mode=ro")
	case readFrozen:
		// A WAL database needs its -shm file, which cannot be created on
		// read-only media; nothing can change the file there anyway.
		params = append(params, "mode=ro", "immutable=1")
	default:
		params = append(params,
			"_pragma=journal_mode(WAL)",
			"_pragma=synchronous(NORMAL)",
			fmt.Sprintf("_pragma=journal_size_limit(%d)", walSizeLimit),
			// A write transaction takes the write lock when it begins, so
			// that waiting for another writer goes through the busy
			// timeout instead of failing when a read turns into a write.
			"_txlock=immediate",
		)
	}
	return "file:" + escaped + "?" + strings.Join(params, "&")
}

// migrate brings the database to schemaVersion. It runs in one write
// transaction, so that processes opening a new log at the same moment
// create the schema once.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()

	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	switch {
	case version == schemaVersion:
		return nil
	case version > schemaVersion:
		return newerSchemaError(version)
	}
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return err
	}
	return tx.Commit()
}

// readVersion returns the schema version of a database opened read-only;
// zero means the writer has not created the schema yet.
func readVersion(ctx context.Context, db *sql.DB) (int, error) {
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, err
	}
	if version > schemaVersion {
		return 0, newerSchemaError(version)
	}
	return version, nil
}

func newerSchemaError(version int) error {
	return fmt.Errorf("schema version %d is newer than this cordon reads (%d)", version, schemaVersion)
}

// sqliteCode returns the primary SQLite result code in err, or 0.
func sqliteCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code() & 0xff
	}
	return 0
}

// isBusy reports whether err means another connection held a lock for
// longer than the busy timeout.
func isBusy(err error) bool {
	code := sqliteCode(err)
	return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
}
