package state

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ChangesFile is the name of the change counter in a state directory.
const ChangesFile = ".changes"

// Changes is a counter shared by every cordon process through a small
// file mapped into memory: Update bumps the counter of a file's directory
// after each write, so a reader that polls a store on every request (the
// proxy) learns of a change made by another process from one memory load
// instead of a stat. Hand edits do not bump it; readers still stat now and
// then (see Poll) to catch those.
//
// A nil *Changes never reports a change, and Poll then always says a
// stat is due: readers fall back to stat on every call.
type Changes struct {
	counter *uint64
}

var (
	changesMu sync.Mutex
	changes   = map[string]*Changes{}
)

// WatchChanges maps the change counter of dir. With create, a missing
// counter is made (writers do that); without, a missing counter gives nil
// (readers do not write). nil is also the answer when the counter cannot be
// mapped, a read-only directory say.
func WatchChanges(dir string, create bool) *Changes {
	dir = filepath.Clean(dir)
	changesMu.Lock()
	defer changesMu.Unlock()
	if c, ok := changes[dir]; ok {
		return c
	}
	c := mapCounter(filepath.Join(dir, ChangesFile), create)
	if c != nil {
		changes[dir] = c
	}
	return c
}

func mapCounter(path string, create bool) *Changes {
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil
	}
	defer f.Close()
	const size = 8
	info, err := f.Stat()
	if err != nil {
		return nil
	}
	if info.Size() < size {
		// Extending never loses a count another process wrote: the
		// counter occupies the first eight bytes either way.
		if err := f.Truncate(size); err != nil {
			return nil
		}
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	// The mapping starts on a page boundary, so the counter is aligned for
	// atomic access.
	return &Changes{counter: (*uint64)(unsafe.Pointer(&mem[0]))}
}

// Load returns the counter.
func (c *Changes) Load() uint64 {
	if c == nil {
		return 0
	}
	return atomic.LoadUint64(c.counter)
}

// Bump tells every reader that something in the directory changed.
func (c *Changes) Bump() {
	if c != nil {
		atomic.AddUint64(c.counter, 1)
	}
}

// Poll is a reader's view of a counter: Due reports whether the store must
// be looked at again, because the counter moved or the last look is older
// than the recheck interval; Seen records a look.
type Poll struct {
	dir     string
	changes *Changes
	tried   time.Time // when mapping the counter was last tried
	gen     uint64
	at      time.Time
	valid   bool
}

// RecheckInterval bounds how long a hand edit, which bumps no counter, can
// go unnoticed by a running proxy.
const RecheckInterval = time.Second

// NewPoll polls dir's counter. It creates nothing: until a writer makes
// the counter, every call is due.
func NewPoll(dir string) Poll { return Poll{dir: dir} }

// Due reports whether a look is due, and the counter value to pass to Seen
// after looking. Callers serialise Due and Seen.
func (p *Poll) Due(now time.Time) (bool, uint64) {
	if p.changes == nil && p.dir != "" && now.Sub(p.tried) >= RecheckInterval {
		p.tried = now
		p.changes = WatchChanges(p.dir, false)
	}
	gen := p.changes.Load()
	if p.changes == nil || !p.valid || gen != p.gen || now.Sub(p.at) >= RecheckInterval {
		return true, gen
	}
	return false, gen
}

// Seen records a look at the store made after reading gen.
func (p *Poll) Seen(gen uint64, now time.Time) {
	p.gen, p.at, p.valid = gen, now, true
}
