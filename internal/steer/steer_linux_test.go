package steer_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fitshake/fitshake/internal/steer"
	"github.com/fitshake/fitshake/pmtu"
)

// testMSS is the clamped twin's MSS; on loopback (MTU 65536) both ends of
// an unclamped connection use about 32 KB, of a clamped one testMSS − 12.
const testMSS = 1000

// dialFrom connects from src to g and returns both ends' MSS.
func dialFrom(t *testing.T, g *steer.Group, src string) (client, server int) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addrFor(g, src))
	require.NoError(t, err)
	defer c.Close()
	s, err := g.Accept()
	require.NoError(t, err)
	defer s.Close()
	require.IsType(t, (*net.TCPConn)(nil), s)
	client, err = pmtu.EffectiveMSS(c)
	require.NoError(t, err)
	server, err = pmtu.EffectiveMSS(s)
	require.NoError(t, err)
	return client, server
}

// addrFor is g's loopback address in src's family.
func addrFor(g *steer.Group, src string) string {
	port := g.Addr().(*net.TCPAddr).Port
	dst := "127.0.0.1"
	if netip.MustParseAddr(src).Is6() {
		dst = "::1"
	}
	return net.JoinHostPort(dst, fmt.Sprint(port))
}

// assertClamped checks that a connection from src is clamped, or not.
func assertClamped(t *testing.T, g *steer.Group, src string, want bool) {
	t.Helper()
	client, server := dialFrom(t, g, src)
	if want {
		assert.Equal(t, testMSS-12, client, "client's MSS from %s", src)
		assert.Equal(t, testMSS-12, server, "server's MSS from %s", src)
	} else {
		assert.Greater(t, client, testMSS, "client's MSS from %s", src)
		assert.Greater(t, server, testMSS, "server's MSS from %s", src)
	}
}

func prefixes(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

// Two IPv4 loopback sources: only the steered one is clamped, both ways;
// re-steering takes effect from the next SYN; nil clamps no one.
func TestGroupSteers(t *testing.T) {
	for _, tt := range []struct{ network, addr string }{
		{"tcp4", "127.0.0.1:0"},
		{"tcp", "[::]:0"}, // dual-stack: IPv4 SYNs reach an IPv6 socket
	} {
		t.Run(tt.network, func(t *testing.T) {
			g, err := steer.Listen(t.Context(), tt.network, tt.addr, testMSS)
			require.NoError(t, err)
			defer g.Close()
			assert.Equal(t, testMSS, g.MSS())

			assertClamped(t, g, "127.0.0.1", false)
			assertClamped(t, g, "127.0.0.2", false)

			require.NoError(t, g.SetClamped(prefixes("127.0.0.2/32")))
			assert.Equal(t, prefixes("127.0.0.2/32"), g.Clamped())
			assertClamped(t, g, "127.0.0.1", false)
			assertClamped(t, g, "127.0.0.2", true)

			require.NoError(t, g.SetClamped(prefixes("::ffff:127.0.0.1/128", "10.0.0.0/8")))
			assertClamped(t, g, "127.0.0.1", true)
			assertClamped(t, g, "127.0.0.2", false)

			require.NoError(t, g.SetClamped(nil))
			assert.Empty(t, g.Clamped())
			assertClamped(t, g, "127.0.0.1", false)
			assertClamped(t, g, "127.0.0.2", false)
		})
	}
}

// IPv6: the one loopback source, steered by /128 and by /48, then not.
func TestGroupSteersIPv6(t *testing.T) {
	g, err := steer.Listen(t.Context(), "tcp6", "[::1]:0", testMSS)
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer g.Close()
	assertClamped(t, g, "::1", false)
	require.NoError(t, g.SetClamped(prefixes("::1/128")))
	assertClamped(t, g, "::1", true)
	require.NoError(t, g.SetClamped(prefixes("::/48", "127.0.0.0/8")))
	assertClamped(t, g, "::1", true)
	require.NoError(t, g.SetClamped(prefixes("::2/128", "127.0.0.0/8")))
	assertClamped(t, g, "::1", false)
}

// The longest program the package builds is accepted by the kernel, and
// its last prefix steers.
func TestGroupLongestProgram(t *testing.T) {
	g, err := steer.Listen(t.Context(), "tcp4", "127.0.0.1:0", testMSS)
	require.NoError(t, err)
	defer g.Close()
	var ps []netip.Prefix
	for i := range steer.MaxPrefixes - 1 {
		ps = append(ps, netip.PrefixFrom(netip.MustParseAddr(fmt.Sprintf("2001:db8::%x:0", i)), 127))
	}
	ps = append(ps, netip.MustParsePrefix("127.0.0.2/31"))
	require.NoError(t, g.SetClamped(ps))
	assertClamped(t, g, "127.0.0.3", true)
	assertClamped(t, g, "127.0.0.1", false)

	var tooMany *steer.TooManyPrefixesError
	require.ErrorAs(t, g.SetClamped(append(ps, netip.MustParsePrefix("10.0.0.0/8"))), &tooMany)
	assert.Len(t, g.Clamped(), steer.MaxPrefixes, "the previous set stays")
	assertClamped(t, g, "127.0.0.3", true)
}

func TestListenInvalid(t *testing.T) {
	for _, mss := range []int{0, 42, 70000} {
		_, err := steer.Listen(t.Context(), "tcp4", "127.0.0.1:0", mss)
		var mssErr *pmtu.MSSError
		assert.ErrorAs(t, err, &mssErr, "mss %d", mss)
	}
	_, err := steer.Listen(t.Context(), "udp", "127.0.0.1:0", testMSS)
	var unknown net.UnknownNetworkError
	assert.ErrorAs(t, err, &unknown)
	_, err = steer.Listen(t.Context(), "tcp4", "127.0.0.1:99999", testMSS)
	assert.Error(t, err)

	// A port taken by a listener without SO_REUSEPORT: no twin can join.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, err = steer.Listen(t.Context(), "tcp4", ln.Addr().String(), testMSS)
	assert.Error(t, err)
}

// Another reuseport listener on the address, a second Group or a socket
// of the user's own: Listen refuses to share the group, and the first
// Group keeps steering.
func TestListenShared(t *testing.T) {
	g, err := steer.Listen(t.Context(), "tcp4", "127.0.0.1:0", testMSS)
	require.NoError(t, err)
	defer g.Close()
	require.NoError(t, g.SetClamped(prefixes("127.0.0.2/32")))
	_, err = steer.Listen(t.Context(), "tcp4", g.Addr().String(), testMSS)
	var shared *steer.SharedError
	require.ErrorAs(t, err, &shared)
	assert.Equal(t, 2, shared.Others)
	assertClamped(t, g, "127.0.0.2", true)
	assertClamped(t, g, "127.0.0.1", false)

	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return serr
	}}
	lc.SetMultipathTCP(false)
	foreign, err := lc.Listen(t.Context(), "tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer foreign.Close()
	_, err = steer.Listen(t.Context(), "tcp4", foreign.Addr().String(), testMSS)
	require.ErrorAs(t, err, &shared)
	assert.Equal(t, 1, shared.Others)
}

// Connections keep coming while the program is replaced hundreds of
// times: every one is accepted, clamped or not as one of the programs
// says, none reset or lost.
func TestGroupReattachUnderLoad(t *testing.T) {
	g, err := steer.Listen(t.Context(), "tcp4", "127.0.0.1:0", testMSS)
	require.NoError(t, err)
	defer g.Close()
	const dials = 300
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var flips sync.WaitGroup
	flips.Go(func() {
		sets := [][]netip.Prefix{prefixes("127.0.0.2/32"), nil, prefixes("127.0.0.0/8")}
		for i := 0; ctx.Err() == nil; i++ {
			if err := g.SetClamped(sets[i%len(sets)]); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	})
	accepted := make(chan int, dials)
	go func() {
		for range dials {
			s, err := g.Accept()
			if err != nil {
				t.Error(err)
				return
			}
			mss, _ := pmtu.EffectiveMSS(s)
			s.Close()
			accepted <- mss
		}
	}()
	var wg sync.WaitGroup
	for i := range dials {
		wg.Go(func() {
			src := []string{"127.0.0.1", "127.0.0.2"}[i%2]
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp4", g.Addr().String())
			if !assert.NoError(t, err) {
				return
			}
			c.Close()
		})
	}
	wg.Wait()
	clamped := 0
	for range dials {
		select {
		case mss := <-accepted:
			if mss == testMSS-12 {
				clamped++
			} else {
				assert.Greater(t, mss, testMSS)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a connection was lost")
		}
	}
	cancel()
	flips.Wait()
	t.Logf("%d of %d connections clamped", clamped, dials)
}

// A twin that dies alone: without the clamped one, steered SYNs fall back
// to the unclamped twin; without the unclamped one, the clamped twin takes
// every SYN. Accept keeps working, and Close still ends everything.
func TestGroupDyingTwin(t *testing.T) {
	for _, tt := range []struct {
		twin        int
		wantClamped bool
	}{{1, false}, {0, true}} {
		t.Run(fmt.Sprint("twin ", tt.twin), func(t *testing.T) {
			g, err := steer.Listen(t.Context(), "tcp4", "127.0.0.1:0", testMSS)
			require.NoError(t, err)
			defer g.Close()
			require.NoError(t, g.SetClamped(prefixes("127.0.0.2/32")))
			require.NoError(t, g.CloseTwin(tt.twin))
			assertClamped(t, g, "127.0.0.2", tt.wantClamped)
			assertClamped(t, g, "127.0.0.1", tt.wantClamped)
			require.NoError(t, g.SetClamped(nil), "the other twin still holds the group")
		})
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(fds)
}

// Close ends both accept loops, even with a connection held by one, and
// leaves no goroutine and no descriptor; Accept and SetClamped then fail
// with net.ErrClosed.
func TestGroupClose(t *testing.T) {
	fds, goroutines0 := openFDs(t), runtime.NumGoroutine()
	settle := func() int {
		var n int
		for range 50 {
			runtime.GC()
			if n = runtime.NumGoroutine(); n <= goroutines0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		return n
	}
	g, err := steer.Listen(t.Context(), "tcp", "127.0.0.1:0", testMSS)
	require.NoError(t, err)
	assert.Greater(t, runtime.NumGoroutine(), goroutines0, "the accept loops run")
	c, err := net.Dial("tcp", g.Addr().String()) // held by a loop: nobody accepts
	require.NoError(t, err)
	defer c.Close()
	time.Sleep(20 * time.Millisecond)

	require.NoError(t, g.Close())
	assert.NoError(t, g.Close(), "Close twice")
	_, err = g.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.ErrorIs(t, g.SetClamped(nil), net.ErrClosed)

	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	assert.False(t, errors.Is(err, os.ErrDeadlineExceeded), "the held connection was closed: %v", err)
	c.Close()
	assert.LessOrEqual(t, settle(), goroutines0, "goroutines left")
	assert.Equal(t, fds, openFDs(t), "descriptors left")
}

// As root, the steering tests run again as nobody with no capabilities
// (a copy of the test binary, re-executed): steering needs no privilege.
// Not as root, every test here already ran unprivileged.
func TestGroupUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the other tests ran unprivileged")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	b, err := os.ReadFile(exe)
	require.NoError(t, err)
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} { // both made 0700 by TempDir
		require.NoError(t, os.Chmod(d, 0o755))
	}
	bin := dir + "/steer.test"
	require.NoError(t, os.WriteFile(bin, b, 0o755))
	cmd := exec.CommandContext(t.Context(), bin, "-test.run", "^(TestGroupSteers|TestGroupSteersIPv6|TestGroupDyingTwin)$", "-test.count=1", "-test.v")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "--- PASS: TestGroupSteers ")
	assert.Contains(t, string(out), "--- PASS: TestGroupSteersIPv6 ")
	assert.NotContains(t, string(out), "SKIP")
}

// Three clamped twins: each prefix's SYNs go to the twin of its clamp, both
// ways, the rest to the unclamped one; a prefix given twice gets the
// smaller clamp; a clamp no twin has is refused and the program stays.
func TestGroupTwins(t *testing.T) {
	g, err := steer.ListenTwins(t.Context(), "tcp", "[::]:0", []int{1360, 1340, testMSS})
	require.NoError(t, err)
	defer g.Close()
	assert.Equal(t, []int{1360, 1340, testMSS}, g.Twins())
	assert.Equal(t, 1360, g.MSS())
	clamps := map[netip.Prefix]int{
		netip.MustParsePrefix("127.0.0.2/32"):         1360,
		netip.MustParsePrefix("127.0.0.3/32"):         1340,
		netip.MustParsePrefix("127.0.0.4/32"):         1360,
		netip.MustParsePrefix("::ffff:127.0.0.4/128"): testMSS,
	}
	require.NoError(t, g.SetClamps(clamps))
	assert.Equal(t, prefixes("127.0.0.2/32", "127.0.0.3/32", "127.0.0.4/32"), g.Clamped())
	assert.Equal(t, map[netip.Prefix]int{
		netip.MustParsePrefix("127.0.0.2/32"): 1360,
		netip.MustParsePrefix("127.0.0.3/32"): 1340,
		netip.MustParsePrefix("127.0.0.4/32"): testMSS,
	}, g.Clamps())
	for src, want := range map[string]int{"127.0.0.2": 1360, "127.0.0.3": 1340, "127.0.0.4": testMSS} {
		client, server := dialFrom(t, g, src)
		assert.Equal(t, want-12, client, "client's MSS from %s", src)
		assert.Equal(t, want-12, server, "server's MSS from %s", src)
	}
	assertClamped(t, g, "127.0.0.1", false)

	err = g.SetClamps(map[netip.Prefix]int{netip.MustParsePrefix("127.0.0.1/32"): 1300})
	var mssErr *pmtu.MSSError
	assert.ErrorAs(t, err, &mssErr)
	assert.Len(t, g.Clamps(), 3, "the previous program stays")

	_, err = steer.ListenTwins(t.Context(), "tcp", "[::]:0", []int{1360, 1360})
	assert.Error(t, err, "two twins of one MSS")
	_, err = steer.ListenTwins(t.Context(), "tcp", "[::]:0", nil)
	assert.Error(t, err, "no clamped twin")
}
