package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/verdict"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// path is a model of a network path for the searches: packets over up or
// down vanish (0: none do), icmp says senders learn the MTU instead.
type path struct {
	up, down int
	icmp     bool
	flight   int // the server's flight in bytes
	calls    int
}

// prober answers probes as the modelled path would, on IPv4 over 1500-byte
// links with timestamps.
func (p *path) prober(_ context.Context, s spec) (obs, error) {
	p.calls++
	packet := s.packet
	if packet == 0 {
		packet = 1500
	}
	o := obs{allowed: 1500, ifMTU: 1500, rtt: time.Millisecond, segments: 2}
	limit := p.up
	if s.dir == down {
		limit = p.down
		packet = min(packet, p.flight+52)
	}
	o.packet = packet
	switch {
	case limit == 0 || packet <= limit:
		o.outcome, o.received = passed, p.flight
	case p.icmp && s.dir == down:
		// The server learns the path MTU and resends smaller.
		o.outcome, o.received, o.packet = passed, p.flight, limit
	case p.icmp:
		o.outcome, o.pmtuShrank, o.pmtu, o.packet = lost, true, limit, limit
	default:
		o.outcome = lost
	}
	return o, nil
}

func newTestRun(p *path) *run {
	return &run{prober: p.prober, maxConns: DefaultMaxConns, ipv4: true, rtt: time.Millisecond,
		hellos: hellos{full: make([]byte, 1479), small: make([]byte, 257), compact: make([]byte, 1418)}}
}

func TestSearches(t *testing.T) {
	tests := []struct {
		name           string
		p              path
		up, down       int
		class          string
		atLeastDown    bool
		maxConns, want int // connections: at most
	}{
		{"healthy", path{flight: 5000}, 1500, 1500, verdict.Healthy, false, 0, 2},
		{"black hole both ways at 1400", path{up: 1400, down: 1400, flight: 5000}, 1400, 1400, verdict.BlackHole, false, 0, 20},
		{"upstream at 1280", path{up: 1280, flight: 5000}, 1280, 1500, verdict.BlackHoleUpstream, false, 0, 10},
		{"downstream at 576", path{down: 576, flight: 5000}, 1500, 576, verdict.BlackHoleDownstream, false, 0, 10},
		{"ICMP works at 1400", path{up: 1400, down: 1400, icmp: true, flight: 5000}, 1400, 1400, verdict.PMTUDWorks, false, 0, 2},
		{"a small flight shows no downstream limit", path{flight: 900}, 1500, 952, verdict.Healthy, true, 0, 2},
		{"below 576 upstream", path{up: 500, flight: 5000}, 0, 1500, verdict.BlackHoleUpstream, false, 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p
			r := newTestRun(&p)
			r.healthy = p.up == 0 && p.down == 0 || p.icmp
			ctx := context.Background()
			down, err := r.searchDown(ctx)
			require.NoError(t, err)
			up, err := r.searchUp(ctx)
			require.NoError(t, err)
			assert.InDelta(t, tt.up, up.mtu, resolution, "upstream")
			assert.LessOrEqual(t, up.mtu, max(tt.up, 0))
			assert.InDelta(t, tt.down, down.mtu, resolution, "downstream")
			assert.Equal(t, tt.atLeastDown, down.atLeast)
			assert.Equal(t, tt.class, r.classify(up, down))
			assert.LessOrEqual(t, p.calls, tt.want, "connections")
			assert.Equal(t, p.calls, r.res.Conns)
		})
	}
}

func TestBudget(t *testing.T) {
	p := path{up: 1400, down: 1400, flight: 5000}
	r := newTestRun(&p)
	r.maxConns = 5
	up, err := r.searchUp(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 5, p.calls, "never more than MaxConns")
	assert.True(t, up.mtu < 1400 && up.mtu >= minPacket, "a coarser limit: %d", up.mtu)
	assert.Contains(t, r.res.Unmeasured, "the rest of the search: MaxConns reached")
}

// snapshot is a TCP_INFO reading over a base where nothing was sent.
func snapshot(f func(*pmtu.TCPInfo)) pmtu.TCPInfo {
	ti := pmtu.TCPInfo{SndMSS: 1448, AdvMSS: 1448, PMTU: 1500, Options: 1, RTT: time.Millisecond}
	f(&ti)
	return ti
}

func TestJudge(t *testing.T) {
	upSpec := spec{dir: up, hello: make([]byte, 1479), wait: 300 * time.Millisecond}
	downSpec := spec{dir: down, hello: make([]byte, 257), wait: 300 * time.Millisecond}
	tests := []struct {
		name    string
		s       spec
		cur     pmtu.TCPInfo
		at      time.Duration
		cut     bool
		done    bool
		outcome outcome
		packet  int
	}{
		{"head acked", upSpec, snapshot(func(i *pmtu.TCPInfo) { i.BytesAcked = 1448 }), 2 * time.Millisecond, false, true, passed, 1500},
		{"tail SACKed, head not, not yet confirmed", upSpec, snapshot(func(i *pmtu.TCPInfo) { i.Sacked = 1 }), 2 * time.Millisecond, false, false, 0, 0},
		{"ICMP lowered the path MTU", upSpec, snapshot(func(i *pmtu.TCPInfo) { i.PMTU = 1400 }), 2 * time.Millisecond, false, true, lost, 1500},
		{"a path MTU learned before, the head acked in its segments", upSpec, snapshot(func(i *pmtu.TCPInfo) { i.PMTU = 1400; i.SndMSS = 1348; i.BytesAcked = 1348 }), 2 * time.Millisecond, false, true, lost, 1400},
		{"nothing yet", upSpec, snapshot(func(*pmtu.TCPInfo) {}), 2 * time.Millisecond, false, false, 0, 0},
		{"nothing, too long", upSpec, snapshot(func(*pmtu.TCPInfo) {}), time.Second, false, true, timedOut, 1500},
		{"reset", upSpec, snapshot(func(*pmtu.TCPInfo) {}), 2 * time.Millisecond, true, true, refused, 1500},
		{"flight with a hole, not yet confirmed", downSpec, snapshot(func(i *pmtu.TCPInfo) { i.RcvOOOPack = 2 }), time.Millisecond, false, false, 0, 0},
		{"downstream silent too long", downSpec, snapshot(func(*pmtu.TCPInfo) {}), time.Second, false, true, timedOut, 1500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := judge{s: tt.s, ifMTU: 1500, base: pmtu.TCPInfo{PMTU: 1500}}
			o, done := j.look(tt.cur, tt.at, tt.cut)
			require.Equal(t, tt.done, done)
			if done {
				assert.Equal(t, tt.outcome, o.outcome)
				assert.Equal(t, tt.packet, o.packet)
			}
		})
	}
	t.Run("a flight in order, once it has arrived", func(t *testing.T) {
		j := judge{s: downSpec, ifMTU: 1500}
		in := snapshot(func(i *pmtu.TCPInfo) { i.BytesReceived = 4000; i.RcvMSS = 1448 })
		_, done := j.look(in, 2*time.Millisecond, false)
		require.False(t, done, "the rest of the flight may still come")
		o, done := j.look(in, 6*time.Millisecond, false)
		require.True(t, done)
		assert.Equal(t, passed, o.outcome)
		assert.Equal(t, 1500, o.packet, "the largest segment plus headers")
		assert.Equal(t, 2*time.Millisecond, o.firstByte)
	})
	t.Run("a SACKed tail confirmed after 25 ms", func(t *testing.T) {
		j := judge{s: upSpec, ifMTU: 1500, base: pmtu.TCPInfo{PMTU: 1500}}
		tail := snapshot(func(i *pmtu.TCPInfo) { i.Sacked = 1 })
		_, done := j.look(tail, 2*time.Millisecond, false)
		require.False(t, done)
		_, done = j.look(tail, 20*time.Millisecond, false)
		require.False(t, done)
		o, done := j.look(tail, 27*time.Millisecond, false)
		require.True(t, done)
		assert.Equal(t, lost, o.outcome)
		assert.Equal(t, 1500, o.packet)
	})
	t.Run("a SACKed tail read before the kernel applied ICMP is no loss", func(t *testing.T) {
		j := judge{s: upSpec, ifMTU: 1500, base: pmtu.TCPInfo{PMTU: 1500}}
		_, done := j.look(snapshot(func(i *pmtu.TCPInfo) { i.Sacked = 1 }), 2*time.Millisecond, false)
		require.False(t, done)
		// The ICMP applied: the path MTU fell, the head is resent.
		o, done := j.look(snapshot(func(i *pmtu.TCPInfo) { i.Sacked = 1; i.PMTU = 1400 }), 3*time.Millisecond, false)
		require.True(t, done)
		assert.Equal(t, lost, o.outcome, "a packet over the path MTU is lost, and ICMP said so")
		assert.True(t, o.pmtuShrank, "PMTUD works")
	})
	t.Run("a SACKed tail that clears before it is confirmed starts over", func(t *testing.T) {
		j := judge{s: upSpec, ifMTU: 1500, base: pmtu.TCPInfo{PMTU: 1500}}
		tail := snapshot(func(i *pmtu.TCPInfo) { i.Sacked = 1 })
		_, done := j.look(tail, 2*time.Millisecond, false)
		require.False(t, done)
		_, done = j.look(snapshot(func(*pmtu.TCPInfo) {}), 10*time.Millisecond, false)
		require.False(t, done)
		_, done = j.look(tail, 30*time.Millisecond, false)
		require.False(t, done, "25 ms from 30, not from 2")
	})
	t.Run("a downstream hole confirmed after 3 round trips", func(t *testing.T) {
		j := judge{s: downSpec, ifMTU: 1500}
		hole := snapshot(func(i *pmtu.TCPInfo) { i.RcvOOOPack = 2 })
		_, done := j.look(hole, 5*time.Millisecond, false)
		require.False(t, done)
		o, done := j.look(hole, 9*time.Millisecond, false)
		require.True(t, done)
		assert.Equal(t, lost, o.outcome)
	})
}

func TestOnThisHost(t *testing.T) {
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	tests := []struct {
		name          string
		local, remote net.Addr
		pmtu          int
		want          string // "" or a part of the description
	}{
		{"loopback", tcp("127.0.0.1:40000"), tcp("127.0.0.1:443"), 65535, "127.0.0.1 is on this host: the connection goes over the loopback (path MTU 65535)"},
		{"IPv6 loopback, no TCP_INFO", tcp("[::1]:40000"), tcp("[::1]:443"), 0, "::1 is on this host: the connection goes over the loopback, where"},
		{"this host's own address", tcp("192.0.2.2:40000"), tcp("192.0.2.2:443"), 65535, "192.0.2.2 is on this host"},
		{"another host", tcp("192.0.2.2:40000"), tcp("192.0.2.1:443"), 1500, ""},
		{"another host over IPv6", tcp("[fd00::2]:40000"), tcp("[fd00::1]:443"), 1500, ""},
		{"not TCP", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := onThisHost(tt.local, tt.remote, tt.pmtu)
			if tt.want == "" {
				assert.Empty(t, got)
				return
			}
			assert.Contains(t, got, tt.want)
		})
	}
}

// TestDialSpecClampsWithControlContext dials loopback with a NetDialer
// whose own function is ControlContext (or Control): the probe's clamp
// still applies, and so do forceDF and the dialer's own function.
func TestDialSpecClampsWithControlContext(t *testing.T) {
	if !pmtu.CanClamp() {
		t.Skip("no MSS clamp on this platform")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var called int
	own := func(string, string, syscall.RawConn) error { called++; return nil }
	for _, tt := range []struct {
		name string
		nd   *net.Dialer
	}{
		{"ControlContext", &net.Dialer{ControlContext: func(_ context.Context, n, a string, c syscall.RawConn) error { return own(n, a, c) }}},
		{"Control", &net.Dialer{Control: own}},
	} {
		for _, forceDF := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, forceDF %v", tt.name, forceDF), func(t *testing.T) {
				called = 0
				c, err := dialSpec(context.Background(), tt.nd, "tcp4", ln.Addr().String(), spec{packet: 1000, forceDF: forceDF})
				require.NoError(t, err)
				defer c.Close()
				mss, err := pmtu.EffectiveMSS(c)
				if errors.Is(err, pmtu.ErrUnsupported) {
					t.Skip(err)
				}
				require.NoError(t, err)
				assert.Positive(t, mss)
				assert.LessOrEqual(t, mss, pmtu.MSSForMTU(1000, false), "the clamp applies (loopback unclamped: 65483)")
				assert.Equal(t, 1, called, "the dialer's own function runs too")
				if forceDF {
					assertDF(t, c)
				}
			})
		}
	}
}

func TestDescribeFitshake(t *testing.T) {
	two := []tlsdial.Attempt{{ID: 1}, {ID: 2, MSS: 1360}}
	certErr := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	dialCertErr := &tlsdial.DialError{Addr: "192.0.2.1:443", Err: certErr}
	reached := []tlsdial.Attempt{
		{ID: 1, HelloSize: 1500, Rung: "pq-full", Outcome: tlsdial.OutcomeStall},
		{ID: 2, MSS: 1360, HelloSize: 1500, Rung: "pq-full", Outcome: tlsdial.OutcomeError, Err: certErr},
	}
	unclamped := []tlsdial.Attempt{
		{ID: 1, HelloSize: 1500, Rung: "pq-full", Outcome: tlsdial.OutcomeReset},
		{ID: 2, HelloSize: 600, Rung: "classical", Outcome: tlsdial.OutcomeError, Err: certErr},
	}
	tests := []struct {
		name     string
		err      error
		rep      tlsdial.Report
		want     string
		wantNone string // a claim it must not make
	}{
		{"first attempt", nil, tlsdial.Report{Attempts: two[:1], HelloSize: 1500, Rung: "pq-full"}, "ok", "recovered"},
		{"recovered", nil, tlsdial.Report{Attempts: two, MSS: 1360, HelloSize: 1500, Rung: "pq-full"}, "ok, recovered after 2 attempts: MSS 1360, pq-full hello of 1500 bytes", ""},
		{"recovered, no clamp", nil, tlsdial.Report{Attempts: two, HelloSize: 600, Rung: "classical"}, "ok, recovered after 2 attempts: no clamp, classical hello of 600 bytes", "MSS 0"},
		{"certificate after a clamp: no hello completed", certErr, tlsdial.Report{Attempts: two}, "ok up to the certificate", "recovered"},
		{"certificate, first attempt", dialCertErr, tlsdial.Report{Attempts: reached[1:]}, "ok up to the certificate, which is not trusted here (x509: certificate signed by unknown authority), reached after 1 attempt: MSS 1360", "tlsdial: dial"},
		{"certificate after a stall", dialCertErr, tlsdial.Report{Attempts: reached}, "ok up to the certificate, which is not trusted here (x509: certificate signed by unknown authority), reached after 2 attempts: MSS 1360, pq-full hello of 1500 bytes", "MSS 0"},
		{"certificate after a reset, no clamp", dialCertErr, tlsdial.Report{Attempts: unclamped}, "ok up to the certificate, which is not trusted here (x509: certificate signed by unknown authority), reached after 2 attempts: no clamp, classical hello of 600 bytes", "MSS 0"},
		{"failed", errors.New("boom"), tlsdial.Report{Attempts: two}, "failed: boom", "recovered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describeFitshake(tt.err, tt.rep)
			assert.True(t, strings.HasPrefix(got, tt.want), "%q", got)
			if tt.wantNone != "" {
				assert.NotContains(t, got, tt.wantNone)
			}
		})
	}
}

func TestCertFix(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantReason string
		wantFix    string
	}{
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}},
			"x509: certificate signed by unknown authority", "app: trust the authority that issued the server's certificate (a private CA?): its PEM in tls.Config.RootCAs; diagnose -cafile FILE"},
		{"wrong name", &tlsdial.DialError{Err: &tls.CertificateVerificationError{Err: x509.HostnameError{Certificate: &x509.Certificate{DNSNames: []string{"a.test"}}, Host: "b.test"}}},
			"x509: certificate is valid for a.test, not b.test", "tls.Config.ServerName; diagnose -servername NAME"},
		{"expired", x509.CertificateInvalidError{Reason: x509.Expired, Detail: "it is late"},
			"x509: certificate has expired or is not yet valid: it is late", "server: replace its certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.True(t, isCertErr(tt.err))
			assert.Equal(t, tt.wantReason, certReason(tt.err))
			assert.Contains(t, certFix(tt.err), tt.wantFix)
		})
	}
	assert.False(t, isCertErr(errors.New("tls: handshake failure")))
}
