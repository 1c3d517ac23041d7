package pmtutest_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fitshake/fitshake/internal/testcert"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
)

// hangTimeout is how long a handshake through a black hole is given.
const hangTimeout = time.Second

// certs returns a server config with a certificate for "localhost"
// carrying extraSANs more names (about 32 bytes each), and a client config
// trusting it.
func certs(t *testing.T, extraSANs int) (server, client *tls.Config) {
	t.Helper()
	server, client, err := testcert.Configs([]string{"localhost"}, extraSANs)
	require.NoError(t, err)
	return server, client
}

const greeting = "hello through the hole"

// tlsServer starts a crypto/tls server that completes handshakes, writes a
// greeting and closes; it is stopped at the end of the test.
func tlsServer(t *testing.T, conf *tls.Config) string {
	t.Helper()
	ln := tls.NewListener(testcert.Listen(t), conf)
	testcert.Serve(t, ln, func(c net.Conn, _ func(net.Conn)) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if c.(*tls.Conn).Handshake() == nil {
			io.WriteString(c, greeting)
		}
	})
	return ln.Addr().String()
}

// countingConn counts the bytes of the first write and all reads.
type countingConn struct {
	net.Conn
	firstWrite atomic.Int64
	read       atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.firstWrite.CompareAndSwap(0, int64(len(b)))
	return c.Conn.Write(b)
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

// handshake dials addr with d and runs a TLS handshake, then reads the
// greeting, all within hangTimeout.
func handshake(t *testing.T, addr string, d *net.Dialer, conf *tls.Config) (*countingConn, error) {
	t.Helper()
	if d == nil {
		d = new(net.Dialer)
	}
	raw, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { raw.Close() })
	require.NoError(t, raw.SetDeadline(time.Now().Add(hangTimeout)))
	cc := &countingConn{Conn: raw}
	tc := tls.Client(cc, conf)
	if err := tc.Handshake(); err != nil {
		return cc, err
	}
	got, err := io.ReadAll(tc)
	if err != nil {
		return cc, err
	}
	if string(got) != greeting {
		return cc, fmt.Errorf("got %q, want %q", got, greeting)
	}
	return cc, nil
}

func startProxy(t *testing.T, cfg pmtutest.Config) *pmtutest.Proxy {
	t.Helper()
	p, err := pmtutest.Start(cfg)
	if errors.Is(err, pmtu.ErrUnsupported) {
		t.Skip(err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

func assertHang(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err, "handshake completed through the black hole")
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	var ne net.Error
	if assert.ErrorAs(t, err, &ne) {
		assert.True(t, ne.Timeout(), "Timeout()")
	}
}

func dialer(t *testing.T, mss, mtu int) *net.Dialer {
	t.Helper()
	var (
		d   *net.Dialer
		err error
	)
	switch {
	case mss != 0:
		d, err = pmtu.DialerWithMSS(nil, mss)
	default:
		d, err = pmtu.DialerWithMTU(nil, mtu)
	}
	if errors.Is(err, pmtu.ErrUnsupported) {
		t.Skip(err)
	}
	require.NoError(t, err)
	return d
}

// The headline: a stock crypto/tls client hangs behind a 1400-byte black
// hole, the same client with a clamped dialer gets through.
func TestNewProxyUpstream(t *testing.T) {
	serverConf, clientConf := certs(t, 0)
	p := pmtutest.NewProxy(t, tlsServer(t, serverConf), 1400)

	cc, err := handshake(t, p.Addr(), nil, clientConf)
	assertHang(t, err)
	hello := cc.firstWrite.Load()
	t.Logf("stock ClientHello: %d bytes", hello)
	assert.Greater(t, hello, int64(1400-52), "the stock ClientHello fits a 1400-byte packet")
	assert.Positive(t, p.Stats().UpDropped)
	assert.Zero(t, p.Stats().DownDropped)

	_, err = handshake(t, p.Addr(), &net.Dialer{Control: pmtu.ClampMSS(1360, nil)}, clientConf)
	require.NoError(t, err)

	st := p.Stats()
	assert.Equal(t, 2, st.Conns)
	require.Len(t, st.MSS, 2)
	assert.Greater(t, st.MSS[0], 1448, "unclamped loopback MSS")
	assert.Equal(t, 1348, st.MSS[1], "clamped MSS seen by the proxy")
}

func TestBlackHole(t *testing.T) {
	smallServer, smallClient := certs(t, 0)
	bigServer, bigClient := certs(t, 150)
	smallAddr, bigAddr := tlsServer(t, smallServer), tlsServer(t, bigServer)

	tests := []struct {
		name      string
		network   string // proxy's; "" is tcp4
		dir       pmtutest.Direction
		bigHello  bool // the default ClientHello, with its ML-KEM key share
		bigCert   bool // a server flight over 4 KB
		mss, mtu  int  // client clamp
		wantHang  bool
		wantUp    bool // upstream drops
		wantDown  bool // downstream drops
		wantSSMSS int  // MSS seen by the proxy, if not 0
	}{
		{name: "small both ways/stock"},
		{name: "upstream/stock", bigHello: true, wantHang: true, wantUp: true},
		{name: "upstream/ClampMSS 1360", bigHello: true, mss: 1360, wantSSMSS: 1348},
		{name: "upstream/ClampMSS 1361 one byte over", bigHello: true, mss: 1361, wantHang: true, wantUp: true, wantSSMSS: 1349},
		{name: "upstream/ClampMTU 1400", bigHello: true, mtu: 1400, wantSSMSS: 1348},
		{name: "downstream/stock", bigCert: true, wantHang: true, wantDown: true},
		{name: "downstream/ClampMSS 1360", bigCert: true, mss: 1360},
		{name: "downstream/ClampMTU 1400", bigCert: true, mtu: 1400},
		{name: "both/stock", bigHello: true, bigCert: true, wantHang: true, wantUp: true},
		{name: "both/ClampMTU 1400", bigHello: true, bigCert: true, mtu: 1400},
		{name: "Upstream only/big hello", dir: pmtutest.Upstream, bigHello: true, wantHang: true, wantUp: true},
		{name: "Upstream only/big cert", dir: pmtutest.Upstream, bigCert: true},
		// The ML-KEM ciphertext in the ServerHello (1088 bytes) makes the
		// server's flight about 1800 bytes even with a small certificate.
		{name: "Downstream only/big hello", dir: pmtutest.Downstream, bigHello: true, wantHang: true, wantDown: true},
		{name: "Downstream only/big hello/ClampMSS 1360", dir: pmtutest.Downstream, bigHello: true, mss: 1360},
		{name: "Downstream only/small", dir: pmtutest.Downstream},
		{name: "Downstream only/big cert", dir: pmtutest.Downstream, bigCert: true, wantHang: true, wantDown: true},
		{name: "v6/stock", network: "tcp6", bigHello: true, wantHang: true, wantUp: true},
		// 1348-byte segments make 1420-byte IPv6 packets.
		{name: "v6/ClampMSS 1360 is too big", network: "tcp6", bigHello: true, mss: 1360, wantHang: true, wantUp: true, wantSSMSS: 1348},
		{name: "v6/ClampMTU 1400", network: "tcp6", bigHello: true, bigCert: true, mtu: 1400, wantSSMSS: 1328},
		{name: "v6/downstream/ClampMSS 1360 is too big", network: "tcp6", bigCert: true, mss: 1360, wantHang: true, wantDown: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.network == "tcp6" {
				if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					ln.Close()
				}
			}
			target, clientConf := smallAddr, smallClient
			if tt.bigCert {
				target, clientConf = bigAddr, bigClient
			}
			clientConf = clientConf.Clone()
			if !tt.bigHello {
				clientConf.CurvePreferences = []tls.CurveID{tls.X25519}
			}
			p := startProxy(t, pmtutest.Config{Target: target, Network: tt.network, Direction: tt.dir})

			cc, err := handshake(t, p.Addr(), dialer(t, tt.mss, tt.mtu), clientConf)
			hello, read := cc.firstWrite.Load(), cc.read.Load()
			t.Logf("ClientHello %d bytes, read %d bytes", hello, read)
			if tt.bigHello {
				assert.Greater(t, hello, int64(1448), "default ClientHello")
			} else {
				assert.Less(t, hello, int64(1000), "X25519-only ClientHello")
			}
			if tt.wantHang {
				assertHang(t, err)
			} else {
				require.NoError(t, err)
				if tt.bigCert {
					assert.Greater(t, read, int64(4096), "server flight")
				}
			}

			st := p.Stats()
			assert.Equal(t, tt.wantUp, st.UpDropped > 0, "upstream drops: %d", st.UpDropped)
			assert.Equal(t, tt.wantDown, st.DownDropped > 0, "downstream drops: %d", st.DownDropped)
			assert.Equal(t, 1, st.Conns)
			if tt.wantSSMSS != 0 && assert.Len(t, st.MSS, 1) {
				assert.Equal(t, tt.wantSSMSS, st.MSS[0])
			}
		})
	}
}

// echoServer echoes each connection until EOF, then closes it.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				echo(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// Within the MTU the proxy is a faithful pipe, half-closes included.
func TestEcho(t *testing.T) {
	p := startProxy(t, pmtutest.Config{Target: echoServer(t)})
	c, err := dialer(t, 1360, 0).Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))

	want := make([]byte, 1<<20)
	rand.Read(want)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c) // EOF: our FIN reached the server and its came back
	require.NoError(t, err)
	require.NoError(t, <-errc)
	assert.True(t, bytes.Equal(want, got), "echoed bytes differ")
	assert.Equal(t, pmtutest.Stats{Conns: 1, MSS: []int{1348}}, p.Stats())
}

// Nothing after the hole is delivered, not even the end of the stream,
// while the connection stays open.
func TestHoleBlocksStream(t *testing.T) {
	p := startProxy(t, pmtutest.Config{Target: echoServer(t), Direction: pmtutest.Upstream})
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()

	_, err = c.Write([]byte("small"))
	require.NoError(t, err)
	buf := make([]byte, 5)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err, "small write before the hole")

	_, err = c.Write(make([]byte, 2000)) // the hole
	require.NoError(t, err)
	require.Eventually(t, func() bool { return p.Stats().UpDropped == 1 }, 5*time.Second, time.Millisecond)
	_, err = c.Write([]byte("small"))
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())

	require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	n, err := c.Read(buf)
	assert.Zero(t, n)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "no echo and no EOF after the hole")
	assert.Equal(t, 2, p.Stats().UpDropped)
}

func TestDelay(t *testing.T) {
	const delay = 200 * time.Millisecond
	serverConf, clientConf := certs(t, 0)
	p := startProxy(t, pmtutest.Config{Target: tlsServer(t, serverConf), Delay: delay})
	clientConf.CurvePreferences = []tls.CurveID{tls.X25519}
	start := time.Now()
	_, err := handshake(t, p.Addr(), nil, clientConf)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), delay)
}

func TestStartErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  pmtutest.Config
		want error // errors.Is target, or nil for any error
	}{
		{name: "no target", cfg: pmtutest.Config{}},
		{name: "MTU too small", cfg: pmtutest.Config{Target: "127.0.0.1:1", MTU: 100}},
		{name: "MTU negative", cfg: pmtutest.Config{Target: "127.0.0.1:1", MTU: -1}},
		{name: "bad direction", cfg: pmtutest.Config{Target: "127.0.0.1:1", Direction: 4}},
		{name: "bad network", cfg: pmtutest.Config{Target: "127.0.0.1:1", Network: "udp"}},
		{name: "negative delay", cfg: pmtutest.Config{Target: "127.0.0.1:1", Delay: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := pmtutest.Start(tt.cfg)
			assert.Nil(t, p)
			assert.Error(t, err)
		})
	}

	var mtuErr *pmtu.MTUError
	_, err := pmtutest.Start(pmtutest.Config{Target: "127.0.0.1:1", MTU: 100})
	if !errors.Is(err, pmtu.ErrUnsupported) {
		assert.ErrorAs(t, err, &mtuErr)
	}
}

// A target that refuses: the client's connection is closed.
func TestTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	target := ln.Addr().String()
	ln.Close()

	p := startProxy(t, pmtutest.Config{Target: target})
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Read(make([]byte, 1))
	assert.Error(t, err)
	assert.NotErrorIs(t, err, os.ErrDeadlineExceeded)
}

func TestDirectionString(t *testing.T) {
	tests := []struct {
		dir  pmtutest.Direction
		want string
	}{
		{pmtutest.Upstream, "upstream"},
		{pmtutest.Downstream, "downstream"},
		{pmtutest.Both, "both"},
		{0, "Direction(0)"},
		{8, "Direction(8)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.dir.String())
		})
	}
}

// echo writes back what it reads until EOF or an error.
func echo(c net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if _, werr := c.Write(buf[:n]); werr != nil || err != nil {
			return
		}
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// Close closes every proxied connection, both ends, and leaves no
// goroutine or descriptor behind.
func TestCloseLeaksNothing(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts /proc/self/fd")
	}
	// Warm up the network poller, whose descriptors stay open.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	ln.Close()

	settle := func(want func() bool) bool {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if want() {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return want()
	}
	goroutines, fds := runtime.NumGoroutine(), countFDs(t)

	func() {
		// A server that never closes its side first: only Close frees it.
		// It copies by hand: io.Copy between TCP conns splices through
		// pooled pipes that outlive the test.
		sln, err := net.Listen("tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		var swg sync.WaitGroup
		swg.Go(func() {
			for {
				c, err := sln.Accept()
				if err != nil {
					return
				}
				swg.Go(func() {
					defer c.Close()
					echo(c)
				})
			}
		})
		defer func() {
			sln.Close()
			swg.Wait()
		}()

		p, err := pmtutest.Start(pmtutest.Config{Target: sln.Addr().String(), Delay: time.Hour})
		require.NoError(t, err)

		var clients []net.Conn
		dial := func(d *net.Dialer, write int) net.Conn {
			c, err := d.Dial("tcp", p.Addr())
			require.NoError(t, err)
			clients = append(clients, c)
			if write > 0 {
				_, err = c.Write(make([]byte, write))
				require.NoError(t, err)
			}
			return c
		}
		dial(new(net.Dialer), 0)         // idle
		dial(new(net.Dialer), 3000)      // black-holed
		dial(dialer(t, 1360, 0), 3000)   // echo held back by the hour-long Delay
		dial(new(net.Dialer), 0).Close() // gone already
		require.Eventually(t, func() bool { return p.Stats().Conns == 4 }, 5*time.Second, time.Millisecond)
		require.Eventually(t, func() bool { return p.Stats().UpDropped == 1 }, 5*time.Second, time.Millisecond)

		start := time.Now()
		require.NoError(t, p.Close())
		assert.Less(t, time.Since(start), time.Second, "Close waited for the Delay")
		assert.NoError(t, p.Close(), "second Close")

		// Every live client sees its connection closed.
		for i, c := range clients[:3] {
			require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
			_, err := io.Copy(io.Discard, c)
			if err != nil {
				assert.NotErrorIs(t, err, os.ErrDeadlineExceeded, "client %d", i)
			}
			c.Close()
		}
		_, err = net.DialTimeout("tcp", p.Addr(), time.Second)
		assert.Error(t, err, "dial after Close")
	}()

	assert.True(t, settle(func() bool { return runtime.NumGoroutine() <= goroutines }),
		"goroutines: %d before, %d after", goroutines, runtime.NumGoroutine())
	assert.True(t, settle(func() bool { return countFDs(t) == fds }),
		"descriptors: %d before, %d after", fds, countFDs(t))

}
