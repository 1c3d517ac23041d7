package pmtu_test

import (
	"errors"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeRoutes is a route table a test can change: the network the machine
// is on.
type fakeRoutes struct {
	mu     sync.Mutex
	byDst  map[netip.Addr]pmtu.FakeRoute // exact destinations
	def4   *pmtu.FakeRoute               // every other IPv4 destination; nil: unreachable
	def6   *pmtu.FakeRoute
	asked  []netip.Addr
	lookup int
}

func (f *fakeRoutes) route(dst netip.Addr) (pmtu.FakeRoute, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookup++
	f.asked = append(f.asked, dst)
	if r, ok := f.byDst[dst]; ok {
		return r, nil
	}
	def := f.def4
	if dst.Is6() {
		def = f.def6
	}
	if def == nil {
		return pmtu.FakeRoute{}, errors.New("network is unreachable")
	}
	return *def, nil
}

func (f *fakeRoutes) set(def4, def6 *pmtu.FakeRoute) {
	f.mu.Lock()
	f.def4, f.def6 = def4, def6
	f.mu.Unlock()
}

func (f *fakeRoutes) calls() (int, []netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, a := f.lookup, f.asked
	f.lookup, f.asked = 0, nil
	return n, a
}

var (
	office = &pmtu.FakeRoute{Dev: "eth0", Gateway: netip.MustParseAddr("10.1.0.1"), Src: netip.MustParseAddr("10.1.2.3")}
	cafe   = &pmtu.FakeRoute{Dev: "wlan0", Gateway: netip.MustParseAddr("192.168.1.1"), Src: netip.MustParseAddr("192.168.1.23")}
	cafe6  = &pmtu.FakeRoute{Dev: "wlan0", Gateway: netip.MustParseAddr("fe80::1"), Src: netip.MustParseAddr("2001:db8:1:2:a:b:c:d")}
)

func TestLocalNetwork(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	routes := &fakeRoutes{byDst: map[netip.Addr]pmtu.FakeRoute{
		netip.MustParseAddr("127.0.0.1"): {Dev: "lo", Src: netip.MustParseAddr("127.0.0.1"), Local: true},
		netip.MustParseAddr("10.1.9.9"):  {Dev: "eth0", Src: netip.MustParseAddr("10.1.2.3")},
	}}
	routes.set(office, cafe6)
	defer pmtu.SetRouteSource(routes.route, clk.Now)()

	for _, tc := range []struct {
		name, network, addr string
		want                string
		wantDst             netip.Addr
	}{
		{"ipv4", "tcp", "198.51.100.7:443", "dev eth0 via 10.1.0.1 src 10.1.2.3", netip.MustParseAddr("198.51.100.7")},
		{"mapped", "tcp", "[::ffff:198.51.100.8]:443", "dev eth0 via 10.1.0.1 src 10.1.2.3", netip.MustParseAddr("198.51.100.8")},
		{"on-link", "tcp4", "10.1.9.9:443", "dev eth0 src 10.1.2.3", netip.MustParseAddr("10.1.9.9")},
		{"ipv6 source as its /64", "tcp", "[2001:db8:ff::1]:443", "dev wlan0 via fe80::1 src 2001:db8:1:2::/64", netip.MustParseAddr("2001:db8:ff::1")},
		{"this host", "tcp", "127.0.0.1:443", "", netip.MustParseAddr("127.0.0.1")},
		{"name", "tcp", "example.com:443", "dev eth0 via 10.1.0.1 src 10.1.2.3", pmtu.DefaultRouteDst4},
		{"name over tcp6", "tcp6", "example.com:443", "dev wlan0 via fe80::1 src 2001:db8:1:2::/64", pmtu.DefaultRouteDst6},
		{"bare host", "tcp", "198.51.100.9", "dev eth0 via 10.1.0.1 src 10.1.2.3", netip.MustParseAddr("198.51.100.9")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, pmtu.LocalNetwork(tc.network, tc.addr))
			_, asked := routes.calls()
			assert.Equal(t, []netip.Addr{tc.wantDst}, asked)
		})
	}

	routes.set(nil, cafe6)
	clk.advance(time.Hour)
	assert.Equal(t, "dev wlan0 via fe80::1 src 2001:db8:1:2::/64", pmtu.LocalNetwork("tcp", "example.com:443"),
		"a name over tcp with no IPv4 route takes IPv6's")
	routes.set(nil, nil)
	clk.advance(time.Hour)
	assert.Equal(t, "", pmtu.LocalNetwork("tcp", "example.com:443"), "no route: unknown")
	assert.Equal(t, "", pmtu.LocalNetwork("tcp", "198.51.100.7:443"))
}

// Routes are remembered briefly; a change of network is seen after that,
// and the Cache's entries of the old network are then not used.
func TestLocalNetworkChange(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	routes := &fakeRoutes{}
	routes.set(office, nil)
	defer pmtu.SetRouteSource(routes.route, clk.Now)()

	c := &pmtu.Cache{}
	k := pmtu.KeyFor("tcp", "example.com:443")
	assert.Equal(t, pmtu.Key{Local: "dev eth0 via 10.1.0.1 src 10.1.2.3", Remote: "tcp|example.com:443"}, k)
	c.Store(k, pmtu.Entry{MTU: 1400})
	for range 100 {
		pmtu.KeyFor("tcp", "example.com:443")
	}
	n, _ := routes.calls()
	assert.Equal(t, 1, n, "one lookup while the route is remembered")

	routes.set(cafe, nil)
	clk.advance(time.Second)
	assert.Equal(t, k, pmtu.KeyFor("tcp", "example.com:443"), "not yet noticed")
	clk.advance(time.Second)
	moved := pmtu.KeyFor("tcp", "example.com:443")
	assert.Equal(t, "dev wlan0 via 192.168.1.1 src 192.168.1.23", moved.Local, "noticed within two seconds")
	_, ok := c.Load(moved)
	assert.False(t, ok, "the office's clamp is not used at the café")

	for _, r := range []*pmtu.FakeRoute{
		{Dev: "eth0", Gateway: office.Gateway, Src: netip.MustParseAddr("10.1.2.4")}, // another source
		{Dev: "eth1", Gateway: office.Gateway, Src: office.Src},                      // another interface
		{Dev: "eth0", Gateway: netip.MustParseAddr("10.1.0.2"), Src: office.Src},     // another gateway
	} {
		routes.set(r, nil)
		clk.advance(time.Hour)
		assert.NotEqual(t, k, pmtu.KeyFor("tcp", "example.com:443"), "%+v", r)
	}
	routes.set(office, nil)
	clk.advance(time.Hour)
	back := pmtu.KeyFor("tcp", "example.com:443")
	e, ok := c.Load(back)
	require.True(t, ok, "back at the office")
	assert.Equal(t, 1400, e.MTU)
}

// On Linux the kernel is asked, unprivileged: loopback is this host.
func TestLocalNetworkKernel(t *testing.T) {
	if runtime.GOOS != "linux" {
		assert.Equal(t, "", pmtu.LocalNetwork("tcp", "198.51.100.7:443"), "unknown outside Linux")
		return
	}
	assert.Equal(t, "", pmtu.LocalNetwork("tcp", "127.0.0.1:443"))
	assert.Equal(t, "", pmtu.LocalNetwork("tcp", "[::1]:443"))
	t.Logf("a name: %q", pmtu.LocalNetwork("tcp", "example.com:443"))
}
