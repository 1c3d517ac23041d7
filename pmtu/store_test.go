package pmtu_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logLines is a *slog.Logger that counts and keeps its records.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logger() *slog.Logger { return slog.New(l) }

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logLines) WithGroup(string) slog.Handler            { return l }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return nil
}

func (l *logLines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// fileEntries reads the file as JSON and returns its entries' remotes.
func fileEntries(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var f struct {
		Format  string
		Version int
		Entries []struct{ Remote string }
	}
	require.NoError(t, json.Unmarshal(b, &f), "%s", b)
	require.Equal(t, "fitshake-paths", f.Format)
	require.Equal(t, 1, f.Version)
	var out []string
	for _, e := range f.Entries {
		out = append(out, e.Remote)
	}
	return out
}

func TestFileCacheRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "paths.json")
	c, err := pmtu.OpenFileCache(path, &pmtu.FileOptions{FlushDelay: -1})
	require.NoError(t, err)
	assert.Equal(t, pmtu.DefaultFileTTL, c.TTL)
	learned := time.Now().Add(-time.Minute).Round(time.Millisecond)
	want := map[pmtu.Key]pmtu.Entry{
		{Local: "dev wlan0 via 192.168.1.1 src 192.168.1.23", Remote: "tcp|example.com:443"}: {MTU: 1400, Rung: "compact", Learned: learned},
		{Remote: "tcp|slow.example:443"}:   {Silence: 1500 * time.Millisecond, Learned: learned},
		{Remote: "tcp|box.example:443"}:    {Class: pmtu.ClassRefused, Learned: learned},
		{Remote: "tcp6|[2001:db8::1]:443"}: {MTU: 1280, Class: pmtu.ClassSplitIntolerant, Learned: learned},
	}
	for k, e := range want {
		c.Store(k, e)
	}
	_, err = os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "FlushDelay -1: nothing written before Flush")
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "twice")
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "private to the user")
	}

	c2, err := pmtu.OpenFileCache(path, nil)
	require.NoError(t, err)
	defer c2.Close()
	assert.Equal(t, len(want), c2.Len())
	for k, w := range want {
		got, ok := c2.Load(k)
		require.True(t, ok, "%+v", k)
		assert.True(t, w.Learned.Equal(got.Learned), "%v %v", w.Learned, got.Learned)
		got.Learned = w.Learned
		assert.Equal(t, w, got)
	}
	_, ok := c2.Load(pmtu.Key{Local: "elsewhere", Remote: "tcp|example.com:443"})
	assert.False(t, ok, "another network's entry is not this one's")
}

func TestMemoryCacheFlushClose(t *testing.T) {
	var c pmtu.Cache
	c.Store(pmtu.Key{Remote: "a"}, pmtu.Entry{MTU: 1400})
	assert.NoError(t, c.Flush())
	assert.NoError(t, c.Close())
	_, ok := c.Load(pmtu.Key{Remote: "a"})
	assert.True(t, ok)
	_, err := pmtu.OpenFileCache("", nil)
	assert.Error(t, err)
}

// Store writes later, on a timer's goroutine, and Close leaves nothing
// running.
func TestFileCacheWritesAsynchronously(t *testing.T) {
	before := runtime.NumGoroutine()
	path := filepath.Join(t.TempDir(), "paths.json")
	c, err := pmtu.OpenFileCache(path, &pmtu.FileOptions{FlushDelay: 20 * time.Millisecond})
	require.NoError(t, err)
	for i := range 200 {
		c.Store(pmtu.Key{Remote: strconv.Itoa(i)}, pmtu.Entry{MTU: 1400})
	}
	assert.True(t, pmtu.FlushArmed(c), "one timer for the batch")
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(path)
		return bytes.Contains(b, []byte(`"remote":"199"`))
	}, 10*time.Second, 10*time.Millisecond, "written without Flush")
	c.Store(pmtu.Key{Remote: "last"}, pmtu.Entry{MTU: 1280})
	require.NoError(t, c.Close())
	assert.Contains(t, fileEntries(t, path), "last", "Close writes what is pending")
	assert.False(t, pmtu.FlushArmed(c))
	c.Store(pmtu.Key{Remote: "after"}, pmtu.Entry{MTU: 1280})
	assert.False(t, pmtu.FlushArmed(c), "closed: memory only")
	_, ok := c.Load(pmtu.Key{Remote: "after"})
	assert.True(t, ok)
	assert.NotContains(t, fileEntries(t, path), "after")
	// Polled by hand: Eventually runs its condition on a goroutine.
	after := runtime.NumGoroutine()
	for deadline := time.Now().Add(10 * time.Second); after > before && time.Now().Before(deadline); after = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	assert.LessOrEqual(t, after, before, "goroutines left running")
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(s), 0o600))
}

// A damaged file of ours is logged once, not used, and replaced.
func TestFileCacheDamaged(t *testing.T) {
	for _, tc := range []struct{ name, content string }{
		{"truncated", `{"format":"fitshake-paths","version":1,"entries":[{"remote":"tcp|a:443","mt`},
		{"bad types", `{"format":"fitshake-paths","version":1,"entries":{"remote":7}}`},
		{"old version", `{"format":"fitshake-paths","version":0,"entries":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "paths.json")
			writeFile(t, path, tc.content)
			var log logLines
			c, err := pmtu.OpenFileCache(path, &pmtu.FileOptions{FlushDelay: -1, Logger: log.logger()})
			require.NoError(t, err)
			assert.Zero(t, c.Len())
			c.Store(pmtu.Key{Remote: "tcp|b:443"}, pmtu.Entry{MTU: 1400})
			require.NoError(t, c.Close())
			assert.Equal(t, []string{"tcp|b:443"}, fileEntries(t, path))
			require.Len(t, log.get(), 1, "one line: %q", log.get())
			assert.Contains(t, log.get()[0], path)
		})
	}
}

// A file that is not ours is logged once, never used, never written over.
func TestFileCacheForeign(t *testing.T) {
	for _, tc := range []struct{ name, content string }{
		{"text", "export PATH=$HOME/bin:$PATH\n"},
		{"binary", "\x00\x01\x02\xff\xfe"},
		{"other json", `{"name":"other program","entries":[{"remote":"tcp|a:443","learned":"2030-01-01T00:00:00Z"}]}`},
		{"newer version", `{"format":"fitshake-paths","version":2,"entries":[{"remote":"tcp|a:443","mtu":1400,"learned":"` +
			time.Now().Format(time.RFC3339) + `"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "paths.json")
			writeFile(t, path, tc.content)
			var log logLines
			c, err := pmtu.OpenFileCache(path, &pmtu.FileOptions{FlushDelay: -1, Logger: log.logger()})
			require.NoError(t, err)
			assert.Zero(t, c.Len(), "nothing used")
			c.Store(pmtu.Key{Remote: "tcp|b:443"}, pmtu.Entry{MTU: 1400})
			assert.Error(t, c.Flush())
			c.Store(pmtu.Key{Remote: "tcp|c:443"}, pmtu.Entry{MTU: 1400})
			assert.NoError(t, c.Close(), "told once")
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, tc.content, string(b), "left alone")
			require.Len(t, log.get(), 1, "one line: %q", log.get())
			_, ok := c.Load(pmtu.Key{Remote: "tcp|c:443"})
			assert.True(t, ok, "the cache still works in memory")
		})
	}
	t.Run("directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "paths.json")
		require.NoError(t, os.Mkdir(path, 0o700))
		var log logLines
		c, err := pmtu.OpenFileCache(path, &pmtu.FileOptions{Logger: log.logger()})
		require.NoError(t, err)
		c.Store(pmtu.Key{Remote: "tcp|b:443"}, pmtu.Entry{MTU: 1400})
		assert.Error(t, c.Close())
		assert.Len(t, log.get(), 1)
	})
	t.Run("nil logger", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "paths.json")
		writeFile(t, path, "garbage")
		c, err := pmtu.OpenFileCache(path, nil)
		require.NoError(t, err)
		c.Store(pmtu.Key{Remote: "tcp|b:443"}, pmtu.Entry{MTU: 1400})
		assert.Error(t, c.Close())
	})
}

// Loading drops what expired (and what claims to be learned far in the
// future), and the file keeps the most recently learned MaxEntries.
func TestFileCacheTTLAndBounds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "paths.json")
	now := time.Now()
	rec := func(remote string, learned time.Time) string {
		return fmt.Sprintf(`{"remote":%q,"mtu":1400,"learned":%q}`, remote, learned.Format(time.RFC3339Nano))
	}
	writeFile(t, path, `{"format":"fitshake-paths","version":1,"entries":[`+strings.Join([]string{
		rec("old", now.Add(-2*time.Hour)),
		rec("fresh", now.Add(-10*time.Minute)),
		rec("future", now.Add(48*time.Hour)),
		rec("", now),
	}, ",")+`]}`)
	c, err := pmtu.OpenFileCache(path, &pmtu.FileOptions{TTL: time.Hour, MaxEntries: 5, FlushDelay: -1})
	require.NoError(t, err)
	assert.Equal(t, 1, c.Len())
	_, ok := c.Load(pmtu.Key{Remote: "fresh"})
	assert.True(t, ok)
	_, ok = c.Load(pmtu.Key{Remote: "old"})
	assert.False(t, ok, "expired")

	for i := range 20 {
		c.Store(pmtu.Key{Remote: strconv.Itoa(i)}, pmtu.Entry{MTU: 1400, Learned: now.Add(time.Duration(i) * time.Second)})
	}
	require.NoError(t, c.Close())
	assert.ElementsMatch(t, []string{"19", "18", "17", "16", "15"}, fileEntries(t, path),
		"the five most recently learned; the expired and the bogus are gone")

	c2, err := pmtu.OpenFileCache(path, &pmtu.FileOptions{MaxEntries: 3})
	require.NoError(t, err)
	defer c2.Close()
	assert.Equal(t, 3, c2.Len(), "loading honours MaxEntries")
	_, ok = c2.Load(pmtu.Key{Remote: "19"})
	assert.True(t, ok, "the newest kept")
}

// Two caches on one file (as two processes) merge rather than overwrite;
// a Delete removes only what was learned before it.
func TestFileCacheMerge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "paths.json")
	opt := &pmtu.FileOptions{FlushDelay: -1}
	a, err := pmtu.OpenFileCache(path, opt)
	require.NoError(t, err)
	b, err := pmtu.OpenFileCache(path, opt)
	require.NoError(t, err)
	now := time.Now()
	a.Store(pmtu.Key{Remote: "a"}, pmtu.Entry{MTU: 1400, Learned: now})
	b.Store(pmtu.Key{Remote: "b"}, pmtu.Entry{MTU: 1400, Learned: now})
	b.Store(pmtu.Key{Remote: "both"}, pmtu.Entry{MTU: 1280, Learned: now.Add(time.Second)})
	a.Store(pmtu.Key{Remote: "both"}, pmtu.Entry{MTU: 1400, Learned: now})
	require.NoError(t, b.Flush())
	require.NoError(t, a.Flush(), "a's older entry for both loses")
	assert.ElementsMatch(t, []string{"a", "b", "both"}, fileEntries(t, path))

	c, err := pmtu.OpenFileCache(path, opt)
	require.NoError(t, err)
	e, ok := c.Load(pmtu.Key{Remote: "both"})
	require.True(t, ok)
	assert.Equal(t, 1280, e.MTU, "the most recently learned wins")

	a.Delete(pmtu.Key{Remote: "a"})
	a.Delete(pmtu.Key{Remote: "b"})
	b.Store(pmtu.Key{Remote: "b"}, pmtu.Entry{MTU: 1300, Learned: now.Add(time.Hour)})
	require.NoError(t, b.Flush())
	require.NoError(t, a.Flush())
	assert.ElementsMatch(t, []string{"b", "both"}, fileEntries(t, path), "b was learned again after the delete")
	for _, x := range []*pmtu.Cache{a, b, c} {
		require.NoError(t, x.Close())
	}
}

// The writer process of TestFileCacheProcesses: it stores and flushes
// PMTU_STORE_N entries named PMTU_STORE_NAME-i into PMTU_STORE_PATH.
func TestFileCacheWriterProcess(t *testing.T) {
	path := os.Getenv("PMTU_STORE_PATH")
	if path == "" {
		t.Skip("run by TestFileCacheProcesses")
	}
	n, _ := strconv.Atoi(os.Getenv("PMTU_STORE_N"))
	name := os.Getenv("PMTU_STORE_NAME")
	c, err := pmtu.OpenFileCache(path, &pmtu.FileOptions{FlushDelay: -1})
	require.NoError(t, err)
	for i := range n {
		c.Store(pmtu.Key{Local: name, Remote: fmt.Sprintf("%s-%d", name, i)}, pmtu.Entry{MTU: 1400})
		require.NoError(t, c.Flush())
	}
	require.NoError(t, c.Close())
}

// Two processes writing one file at once lose nothing, and a reader never
// sees a partial file.
func TestFileCacheProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	path := filepath.Join(t.TempDir(), "paths.json")
	const n = 40
	var stop atomic.Bool
	var reads, bad atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			b, err := os.ReadFile(path)
			if err != nil {
				time.Sleep(time.Millisecond)
				continue
			}
			reads.Add(1)
			if !json.Valid(b) {
				bad.Add(1)
			}
		}
	})
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for _, name := range []string{"p1", "p2"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFileCacheWriterProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "PMTU_STORE_PATH="+path, "PMTU_STORE_NAME="+name, "PMTU_STORE_N="+strconv.Itoa(n))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	for i, cmd := range cmds {
		require.NoError(t, cmd.Wait(), "%s", outs[i])
	}
	stop.Store(true)
	wg.Wait()
	assert.Zero(t, bad.Load(), "of %d reads", reads.Load())
	got := fileEntries(t, path)
	assert.Len(t, got, 2*n, "no update lost")
	for _, name := range []string{"p1", "p2"} {
		for i := range n {
			assert.Contains(t, got, fmt.Sprintf("%s-%d", name, i))
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*.tmp"))
	assert.Empty(t, leftovers, "no temporary file left")
}

func TestDefaultFilePath(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/tmp/xdg-cache")
	p, err := pmtu.DefaultFilePath()
	require.NoError(t, err)
	if runtime.GOOS == "linux" {
		assert.Equal(t, "/tmp/xdg-cache/fitshake/paths.json", p)
	}
	assert.Equal(t, "paths.json", filepath.Base(p))
}
