package tlswatch

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fitshake/fitshake/pmtu"
)

// TestListenSelfFix: once Policy clamps 127.0.0.0/24, a new connection from
// 127.0.0.2 is accepted with the clamped MSS, and one from 127.0.1.1 (another
// prefix) keeps the full one; closing the listener leaves nothing behind.
func TestListenSelfFix(t *testing.T) {
	g0, fd0 := runtime.NumGoroutine(), fds(t)
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	w := &Watcher{now: clk.Now, Logger: slog.New(slog.DiscardHandler), Policy: Policy{After: 2}}
	ln, err := w.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port

	mss := func(src string) int {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		require.NoError(t, err)
		defer c.Close()
		s, err := ln.Accept()
		require.NoError(t, err)
		defer s.Close()
		info, err := pmtu.ReadTCPInfo(c)
		require.NoError(t, err)
		return int(info.SndMSS)
	}
	full := mss("127.0.0.2")
	w.record(tcpAddr("127.0.0.9:1"), upstreamObs)
	w.record(tcpAddr("127.0.0.9:2"), upstreamObs)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/24")}, w.Clamped())
	assert.Less(t, mss("127.0.0.2"), full, "the clamped prefix")
	assert.Equal(t, pmtu.MSSForMTU(1400, false)-12, mss("127.0.0.2"), "the ladder's first rung, IPv4's MSS")
	assert.Equal(t, full, mss("127.0.1.1"), "another prefix keeps the full MSS")

	require.NoError(t, ln.Close())
	w.mu.Lock()
	assert.Empty(t, w.fixers, "a closed listener is told nothing more")
	w.mu.Unlock()
	// +1: the runtime starts its cleanup goroutine lazily, at the first
	// closed file, and counts it (as TestNoLeaks allows).
	assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= g0+1 }, 5*time.Second, 10*time.Millisecond, "goroutines")
	assert.Eventually(t, func() bool { return fds(t) <= fd0 }, 5*time.Second, 10*time.Millisecond, "file descriptors")
}
