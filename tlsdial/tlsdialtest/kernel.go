package tlsdialtest

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

// KernelPath is a path on which the kernel itself drops large packets: the
// test runs in a client network namespace, its servers listen in a server
// namespace, and a router namespace between them drops every packet over
// MTU bytes, both ways, with no ICMP (nftables), as a VPN whose firewall
// blocks ICMP does. The client's TCP sees the loss (retransmissions, SACK
// blocks), so fitshake classifies the black hole from TCP_INFO instead of
// waiting out its stall window. Addresses come from 198.18.0.0/15, inside
// the namespaces only.
type KernelPath struct {
	// MTU is the largest packet the path carries.
	MTU int

	serverNS string
	server   netip.Addr
}

// NewKernelPath builds a kernel path of the given MTU (0 means 1400;
// 576..1500) and runs the calling test again, alone, in its client
// namespace (the test binary re-executed with -test.run), since the
// test's dials, from any goroutine, must leave from there. In that run it
// returns the path. In the calling process it returns nil once that run
// has ended: the run's output is logged, its failure fails t, and the
// namespaces are removed. A test calls it first and returns on nil:
//
//	p := tlsdialtest.NewKernelPath(t, 1400)
//	if p == nil {
//		return // the test ran in the client namespace
//	}
//	srv := p.NewServer(t, handler)
//
// It needs Linux, root (network namespaces) and the tools ip, nft and
// ethtool (Debian: iproute2, nftables, ethtool); elsewhere it skips t and
// says what is missing (an unprivileged user namespace is not tried).
//
// Code before the call runs in both processes. The run is given
// -test.run (this test and its subtests), -test.count=1, -test.v and
// -test.short if set; other flags of the test binary (a coverage profile)
// are not passed on. The servers are reached over IPv4 only.
func NewKernelPath(t *testing.T, mtu int) *KernelPath {
	t.Helper()
	return newKernelPath(t, mtu)
}

// Listen returns a TCP listener on the server's IPv4 address (port 0
// picks one), in the server namespace, closed when the test ends.
func (p *KernelPath) Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := p.listen(net.JoinHostPort(p.server.String(), "0"))
	if err != nil {
		t.Fatalf("tlsdialtest: listening in %s: %v", p.serverNS, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// NewServer is like the package's NewServer, listening in the server
// namespace with a certificate for the server's address; NewClient(t,
// srv) trusts it.
func (p *KernelPath) NewServer(t testing.TB, handler http.Handler) *httptest.Server {
	t.Helper()
	return newServer(t, handler, p.Listen(t), p.server.String())
}
