package pmtu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// A Cache opened with OpenFileCache keeps its entries in a file as well as
// in memory, so that a process that runs for seconds (a command-line tool,
// a CI job) starts where the last one stopped instead of paying a stall
// window again.
//
// Writes are asynchronous: Store and Delete only note the change, in
// memory, and arm a timer; FlushDelay later, a flush runs on the timer's
// goroutine and writes every change noted so far. A dial therefore never
// waits on the file. A process that exits soon after dialing must call
// Close (or Flush) before it exits, or its last changes are lost.
//
// A flush merges rather than overwrites, so that several processes can
// share a file: under an advisory lock on PATH.lock (flock on Unix,
// LockFileEx on Windows, none elsewhere) it reads the file, applies this
// process's changes (the most recently learned entry of a path wins; a
// Delete removes what was learned before it), drops expired entries, keeps
// the MaxEntries most recently learned, and replaces the file atomically
// (a temporary file in the same directory, then rename). Readers need no
// lock: they see the old file or the new one, never a mix.
//
// A file that is not one of ours (not JSON, JSON of another program, a
// format version from a newer fitshake) is never used and never written
// over: one line is logged and the cache stays in memory only. A file of
// ours that cannot be decoded (truncated, edited by hand) is logged, not
// used, and replaced by the next flush.

// Defaults of OpenFileCache.
const (
	// DefaultFileTTL is how long an entry of a file-backed cache is
	// trusted. Longer than DefaultCacheTTL: a process that runs once an
	// hour must still find what the last run learned, and entries are
	// scoped to the local network they were learned on (Key.Local), so a
	// laptop that moves does not carry them along. A network that
	// black-holes large packets (a VPN, a tunnel) usually does so for
	// days.
	DefaultFileTTL = 24 * time.Hour
	// DefaultFlushDelay is how long after a change a file-backed cache
	// writes it: long enough to gather the changes of dials that end
	// together into one write, short enough that a process which forgets
	// Close has usually written before it exits.
	DefaultFlushDelay = 100 * time.Millisecond
)

// fileFormat and fileVersion mark a file written by this package. A file
// starts with fileMagic, so that a damaged file of ours can be told from
// another program's.
const (
	fileFormat  = "fitshake-paths"
	fileVersion = 1
	fileMagic   = `{"format":"` + fileFormat + `"`
	maxFileSize = 16 << 20 // a file larger than this is not ours
)

// FileOptions configure OpenFileCache. A nil *FileOptions means the zero
// value, whose every field takes its default.
type FileOptions struct {
	// TTL is the Cache's TTL: how long an entry stays valid, in memory
	// and in the file. Zero means DefaultFileTTL; negative means entries
	// never expire.
	TTL time.Duration
	// MaxEntries is the Cache's MaxEntries, which also bounds the file.
	// Zero means DefaultCacheEntries; negative means nothing is kept.
	MaxEntries int
	// FlushDelay is how long after a Store or Delete the change is
	// written. Zero means DefaultFlushDelay; negative means changes are
	// written only by Flush and Close.
	FlushDelay time.Duration
	// Logger receives one line when the file cannot be used (damaged,
	// foreign, unreadable) or written. Nil means nothing is logged.
	Logger *slog.Logger
}

// DefaultFilePath returns where a file-backed cache lives unless told
// otherwise: fitshake/paths.json in the user's cache directory
// (os.UserCacheDir: $XDG_CACHE_HOME or ~/.cache on Linux,
// ~/Library/Caches on macOS, %LocalAppData% on Windows).
func DefaultFilePath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("pmtu: no cache directory: %w", err)
	}
	return filepath.Join(dir, "fitshake", "paths.json"), nil
}

// OpenFileCache returns a Cache backed by the file at path, loaded with the
// file's unexpired entries. The file and its directory are created by the
// first write. A damaged or foreign file is not an error: it is logged and
// the cache starts empty. The only errors are an empty path and a path
// whose directory cannot be created.
//
// The caller should Close the cache when done (typically with defer in
// main): Close writes the changes not yet written. To make every dialer
// that names no Cache use it, assign it to DefaultCache before the first
// dial.
func OpenFileCache(path string, o *FileOptions) (*Cache, error) {
	if path == "" {
		return nil, errors.New("pmtu: OpenFileCache: empty path")
	}
	if o == nil {
		o = &FileOptions{}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("pmtu: OpenFileCache: %w", err)
	}
	c := &Cache{TTL: o.TTL, MaxEntries: o.MaxEntries}
	if c.TTL == 0 {
		c.TTL = DefaultFileTTL
	}
	fb := &fileBacking{path: path, delay: o.FlushDelay, log: o.Logger}
	if fb.delay == 0 {
		fb.delay = DefaultFlushDelay
	}
	c.file = fb
	fb.flushMu.Lock()
	defer fb.flushMu.Unlock()
	var records []fileRecord
	err := fb.locked(func() error {
		var err error
		records, err = fb.read()
		return err
	})
	if err != nil {
		fb.warn("pmtu: file cache not loaded", err)
	}
	now := c.now()
	ttl, limit := c.ttl(), max(c.maxEntries(), 0)
	records = fresh(records, now, ttl, limit)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	// Oldest first, so that the most recently learned ends up the most
	// recently used.
	for _, r := range slices.Backward(records) {
		c.insert(r.key(), r.entry())
	}
	return c, nil
}

// Flush writes the changes not yet written to the cache's file, now, and
// returns the error of the write if it failed. It returns nil at once for a
// cache without a file, or with nothing to write.
func (c *Cache) Flush() error {
	if c.file == nil {
		return nil
	}
	return c.file.flush(c)
}

// Close writes the changes not yet written, as Flush, and stops writing:
// the cache keeps working in memory only, and later changes are not
// written. It returns nil for a cache without a file. Closing twice is
// harmless.
func (c *Cache) Close() error {
	if c.file == nil {
		return nil
	}
	err := c.file.flush(c)
	c.mu.Lock()
	c.file.closed = true
	if c.file.timer != nil {
		c.file.timer.Stop()
		c.file.timer = nil
	}
	clear(c.file.pending)
	c.mu.Unlock()
	return err
}

// fileBacking is a Cache's file. pending, timer and closed are guarded by
// the Cache's mu; the rest by flushMu.
type fileBacking struct {
	path  string
	delay time.Duration
	log   *slog.Logger

	pending map[Key]change
	timer   *time.Timer
	closed  bool

	flushMu sync.Mutex
	warned  bool // a problem with the file has been logged
	foreign bool // the file is not ours: never write it
}

// change is a Store (entry) or Delete (deleted, at) not yet written.
type change struct {
	entry   Entry
	deleted bool
	at      time.Time
}

// note records a change for the next flush and arms the timer. Called
// with c.mu held; cheap: no I/O.
func (fb *fileBacking) note(c *Cache, k Key, ch change) {
	if fb.closed {
		return
	}
	if fb.pending == nil {
		fb.pending = make(map[Key]change)
	}
	fb.pending[k] = ch
	if fb.timer == nil && fb.delay > 0 {
		fb.timer = time.AfterFunc(fb.delay, func() {
			c.mu.Lock()
			fb.timer = nil
			c.mu.Unlock()
			fb.flush(c) // errors are logged
		})
	}
}

// flush writes the pending changes, merged with the file.
func (fb *fileBacking) flush(c *Cache) error {
	fb.flushMu.Lock()
	defer fb.flushMu.Unlock()
	c.mu.Lock()
	changes := fb.pending
	fb.pending = nil
	c.mu.Unlock()
	if len(changes) == 0 || fb.foreign {
		return nil
	}
	err := fb.locked(func() error {
		records, err := fb.read()
		switch {
		case errors.Is(err, errForeign):
			fb.foreign = true
			return err
		case err != nil:
			fb.warn("pmtu: file cache replaced", err) // ours, damaged
		}
		now := c.now()
		records = merge(records, changes)
		records = fresh(records, now, c.ttl(), max(c.maxEntries(), 0))
		return fb.write(records)
	})
	if err != nil {
		fb.warn("pmtu: file cache not written", err)
	}
	return err
}

// warn logs a problem with the file, once per cache.
func (fb *fileBacking) warn(msg string, err error) {
	if fb.warned || fb.log == nil {
		return
	}
	fb.warned = true
	fb.log.Warn(msg, "path", fb.path, "err", err)
}

// errForeign marks a file that is not ours.
var errForeign = errors.New("not a fitshake paths file")

// fileJSON is the file's format. Format comes first: fileMagic.
type fileJSON struct {
	Format  string       `json:"format"`
	Version int          `json:"version"`
	Entries []fileRecord `json:"entries"`
}

// fileRecord is one entry in the file. Class is kept by name, so that the
// numbering of Class may change.
type fileRecord struct {
	Local   string    `json:"local,omitempty"`
	Remote  string    `json:"remote"`
	MTU     int       `json:"mtu,omitempty"`
	Rung    string    `json:"rung,omitempty"`
	Silence int64     `json:"silence_ms,omitempty"`
	Class   string    `json:"class,omitempty"`
	Learned time.Time `json:"learned"`
	// FromNetwork is Entry.FromNetwork. Files written before it have
	// none: their entries were all learned from the destination alone.
	FromNetwork bool `json:"from_network,omitempty"`
}

func (r fileRecord) key() Key { return Key{Local: r.Local, Remote: r.Remote} }

func (r fileRecord) entry() Entry {
	return Entry{MTU: r.MTU, Rung: r.Rung, Silence: time.Duration(r.Silence) * time.Millisecond,
		Class: classNamed(r.Class), Learned: r.Learned, FromNetwork: r.FromNetwork}
}

func recordOf(k Key, e Entry) fileRecord {
	r := fileRecord{Local: k.Local, Remote: k.Remote, MTU: e.MTU, Rung: e.Rung,
		Silence: e.Silence.Milliseconds(), Learned: e.Learned, FromNetwork: e.FromNetwork}
	if e.Class != ClassUnknown {
		r.Class = e.Class.String()
	}
	return r
}

// classNamed is the Class whose String is s; ClassUnknown for a name this
// version does not know.
func classNamed(s string) Class {
	for c := ClassUnknown; c <= ClassProxy; c++ {
		if c.String() == s {
			return c
		}
	}
	return ClassUnknown
}

// read returns the file's records. A missing or empty file has none; a
// file that is not ours is errForeign; a file of ours that does not decode
// is another error, with no records.
func (fb *fileBacking) read() ([]fileRecord, error) {
	f, err := os.Open(fb.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() || fi.Size() > maxFileSize {
		return nil, fmt.Errorf("%w: not a regular file of at most %d bytes", errForeign, maxFileSize)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, err
	}
	b := bytes.TrimSpace(buf.Bytes())
	if len(b) == 0 {
		return nil, nil
	}
	if !bytes.HasPrefix(b, []byte(fileMagic)) {
		return nil, errForeign
	}
	var fj fileJSON
	if err := json.Unmarshal(b, &fj); err != nil {
		return nil, fmt.Errorf("damaged: %w", err)
	}
	if fj.Version > fileVersion {
		return nil, fmt.Errorf("%w: format version %d, newer than %d", errForeign, fj.Version, fileVersion)
	}
	if fj.Version != fileVersion {
		return nil, fmt.Errorf("damaged: format version %d", fj.Version)
	}
	return fj.Entries, nil
}

// write replaces the file with records, atomically.
func (fb *fileBacking) write(records []fileRecord) error {
	b, err := json.Marshal(fileJSON{Format: fileFormat, Version: fileVersion, Entries: records})
	if err != nil {
		return err
	}
	dir := filepath.Dir(fb.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(fb.path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), fb.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// locked runs f holding the advisory lock on PATH.lock. The lock file is
// never removed: removing it would let two processes hold locks on two
// different files.
func (fb *fileBacking) locked(f func() error) error {
	lf, err := os.OpenFile(fb.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := lockFile(lf); err != nil {
		return err
	}
	defer unlockFile(lf)
	return f()
}

// merge applies changes to records: the most recently learned entry of a
// key wins, and a deletion removes an entry learned no later than it.
func merge(records []fileRecord, changes map[Key]change) []fileRecord {
	byKey := make(map[Key]int, len(records)+len(changes))
	out := make([]fileRecord, 0, len(records)+len(changes))
	for _, r := range records {
		if r.Remote == "" {
			continue
		}
		k := r.key()
		if i, ok := byKey[k]; ok {
			if r.Learned.After(out[i].Learned) {
				out[i] = r
			}
			continue
		}
		byKey[k] = len(out)
		out = append(out, r)
	}
	var gone []int
	for k, ch := range changes {
		i, ok := byKey[k]
		switch {
		case ch.deleted:
			if ok && !out[i].Learned.After(ch.at) {
				gone = append(gone, i)
			}
		case !ok:
			byKey[k] = len(out)
			out = append(out, recordOf(k, ch.entry))
		case !out[i].Learned.After(ch.entry.Learned):
			out[i] = recordOf(k, ch.entry)
		}
	}
	slices.Sort(gone)
	for _, i := range slices.Backward(gone) {
		out = slices.Delete(out, i, i+1)
	}
	return out
}

// fresh returns records without the expired ones (and those learned
// implausibly far in the future), the most recently learned first, at most
// limit of them.
func fresh(records []fileRecord, now time.Time, ttl time.Duration, limit int) []fileRecord {
	records = slices.DeleteFunc(records, func(r fileRecord) bool {
		age := now.Sub(r.Learned)
		return r.Remote == "" || (ttl > 0 && age >= ttl) || age < -time.Hour
	})
	slices.SortStableFunc(records, func(a, b fileRecord) int { return b.Learned.Compare(a.Learned) })
	if len(records) > limit {
		records = records[:limit]
	}
	return records
}
