package pmtu

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// Limits of the TCP_MAXSEG value accepted before connect, as measured on
// Linux: 0 leaves the MSS alone; any other value outside MinMSS..MaxMSS
// fails with EINVAL.
const (
	MinMSS = 88    // smallest TCP_MAXSEG Linux accepts before connect
	MaxMSS = 32767 // largest TCP_MAXSEG Linux accepts before connect
)

// Limits of a path MTU accepted by [ValidateMTU], [ClampMTU] and
// [DialerWithMTU]. MinMTU is the smallest MTU for which [MSSForMTU] stays at
// or above [MinMSS] for both IPv4 and IPv6 (148 − 60 = 88). It is well below
// any real path: IPv6 requires 1280 and IPv4 paths below 576 are
// pathological. MaxMTU is the largest IP packet; above MaxMSS + 60 bytes the
// MSS is capped at [MaxMSS].
const (
	MinMTU = MinMSS + ipv6Overhead // 148
	MaxMTU = 65535
)

// IP and TCP header bytes that separate a path MTU from a TCP_MAXSEG value.
// TCP options (timestamps, 12 bytes) are not included: the kernel deducts
// them from TCP_MAXSEG itself.
const (
	ipv4Overhead = 20 + 20 // IPv4 header + TCP header
	ipv6Overhead = 40 + 20 // IPv6 header + TCP header
	timestampLen = 12      // the TCP timestamps option, padded
)

// HeaderBytes returns the IP and TCP header bytes of a TCP data segment:
// 40 on IPv4 and 60 on IPv6 (the headers without options), 12 more when
// the connection uses TCP timestamps (as Linux does by default; TCPInfo
// reports them in Options&1). A segment's IP packet is its payload plus
// HeaderBytes: 1448 + 52 = 1500 on Ethernet.
func HeaderBytes(ipv6, timestamps bool) int {
	n := ipv4Overhead
	if ipv6 {
		n = ipv6Overhead
	}
	if timestamps {
		n += timestampLen
	}
	return n
}

var (
	// ErrUnsupported is returned where this platform cannot clamp the MSS
	// or read TCP_INFO.
	ErrUnsupported = errors.New("pmtu: not supported on this platform")

	// ErrNotTCP is returned by [EffectiveMSS] and [ReadTCPInfo] for a
	// connection that is not, and does not wrap, a TCP socket.
	ErrNotTCP = errors.New("pmtu: not a TCP connection")
)

// MSSError reports an MSS value the kernel would reject.
type MSSError struct {
	MSS int
}

func (e *MSSError) Error() string {
	return fmt.Sprintf("pmtu: invalid MSS %d: want 0 (no clamp) or %d..%d", e.MSS, MinMSS, MaxMSS)
}

// MTUError reports an MTU value outside 0 (no clamp) and [MinMTU]..[MaxMTU].
type MTUError struct {
	MTU int
}

func (e *MTUError) Error() string {
	return fmt.Sprintf("pmtu: invalid MTU %d: want 0 (no clamp) or %d..%d", e.MTU, MinMTU, MaxMTU)
}

// ValidateMSS returns nil for 0 (no clamp) and for [MinMSS]..[MaxMSS], and
// an [*MSSError] otherwise.
func ValidateMSS(mss int) error {
	if mss == 0 || (mss >= MinMSS && mss <= MaxMSS) {
		return nil
	}
	return &MSSError{MSS: mss}
}

// ValidateMTU returns nil for 0 (no clamp) and for [MinMTU]..[MaxMTU], and
// an [*MTUError] otherwise.
func ValidateMTU(mtu int) error {
	if mtu == 0 || (mtu >= MinMTU && mtu <= MaxMTU) {
		return nil
	}
	return &MTUError{MTU: mtu}
}

// MSSForMTU returns the TCP_MAXSEG value that keeps every packet of a
// connection within mtu: mtu − 40 for IPv4 and mtu − 60 for IPv6, so 1400
// gives 1360 and 1340. The kernel then deducts the TCP options it uses
// (timestamps, 12 bytes) by itself: segments carry 1348 and 1328 bytes.
//
// It returns 0 for an mtu of 0 or less, and at most [MaxMSS]. For an mtu
// that [ValidateMTU] accepts, the result is one that [ValidateMSS] accepts.
func MSSForMTU(mtu int, ipv6 bool) int {
	if mtu <= 0 {
		return 0
	}
	return min(mtu-HeaderBytes(ipv6, false), MaxMSS)
}

// EffectiveMSS returns the kernel's current send MSS of a connected TCP
// connection, getsockopt(TCP_MAXSEG): the smaller of the two ends'
// announced MSS, less the TCP options in use. On Linux that is 1448 for
// IPv4 over Ethernet (1428 for IPv6) and 1348 after a clamp of 1360.
//
// c may wrap the TCP connection: EffectiveMSS unwraps
// interface{ NetConn() net.Conn } (as [crypto/tls.Conn] implements) until it
// reaches a [syscall.Conn] with a TCP address. It returns [ErrNotTCP] when
// there is none, and [ErrUnsupported] where the platform cannot tell.
func EffectiveMSS(c net.Conn) (int, error) {
	rc, err := rawTCPConn(c)
	if err != nil {
		return 0, err
	}
	return getMSS(rc)
}

// TCPInfo is a portable subset of Linux's struct tcp_info, as read by
// [ReadTCPInfo]. Fields that the running kernel does not report are zero:
// BytesSent, BytesRetrans and DSACKDups need Linux 4.19 or later, and
// RcvOOOPack, SndWnd, RcvWnd and TotalRTO later kernels still.
type TCPInfo struct {
	State       uint8 // TCP state; 1 is ESTABLISHED
	CAState     uint8 // congestion avoidance state; 0 open, 4 loss
	Retransmits uint8 // consecutive RTO retransmissions of the head segment
	Probes      uint8 // unanswered zero-window or keepalive probes
	Backoff     uint8 // RTO backoff exponent
	Options     uint8 // TCPI_OPT_* flags: 1 timestamps, 2 SACK, 4 window scaling, 8 ECN

	RTO    time.Duration // retransmission timeout
	ATO    time.Duration // delayed ACK timeout
	RTT    time.Duration // smoothed round-trip time
	RTTVar time.Duration // round-trip time variation
	MinRTT time.Duration // smallest round-trip time seen

	SndMSS uint32 // send MSS: what EffectiveMSS returns
	RcvMSS uint32 // estimate of the peer's send MSS
	AdvMSS uint32 // MSS announced to the peer
	PMTU   uint32 // the kernel's path MTU for the route: stays at the link MTU in a black hole

	Unacked      uint32 // segments sent and not yet acknowledged
	Sacked       uint32 // segments acknowledged by SACK beyond a hole
	Lost         uint32 // segments presumed lost
	Retrans      uint32 // segments retransmitted and not yet acknowledged
	TotalRetrans uint32 // all retransmitted segments
	TotalRTO     uint32 // RTO expirations (Linux 6.7 and later)

	SndCwnd     uint32 // congestion window, in segments
	SndSsthresh uint32 // slow start threshold, in segments
	SndWnd      uint32 // peer's advertised receive window, in bytes
	RcvWnd      uint32 // our advertised receive window, in bytes
	NotSent     uint32 // bytes written but not yet sent

	BytesSent     uint64 // data bytes sent, retransmissions included
	BytesAcked    uint64 // bytes acknowledged by the peer; the SYN counts 1
	BytesReceived uint64 // data bytes received in order
	BytesRetrans  uint64 // data bytes retransmitted

	SegsOut     uint32 // segments sent, pure ACKs included
	SegsIn      uint32 // segments received, pure ACKs included
	DataSegsOut uint32 // segments sent with data
	DataSegsIn  uint32 // segments received with data
	Delivered   uint32 // segments delivered to the peer, the SYN included
	DSACKDups   uint32 // duplicate segments the peer reported by D-SACK
	RcvOOOPack  uint32 // segments received out of order: data beyond a hole

	LastDataSent time.Duration // time since data was last sent
	LastDataRecv time.Duration // time since data was last received
	LastAckRecv  time.Duration // time since an ACK was last received
}

// BeforeWrite returns t, read just after a write of n bytes, with its
// byte counters as they stood before that write: BytesSent, BytesAcked and
// NotSent. It lets a caller write first and read TCP_INFO once, after the
// write, where reading it before would delay the bytes (a getsockopt costs
// microseconds). It assumes that everything written before had been
// acknowledged, as it has when the peer answered it.
//
// The part of the write already acknowledged is what was sent less what is
// in flight: on a path whose round trip is longer than the read took,
// none. Where the kernel does not report BytesSent (before Linux 4.19), it
// is taken as all of it when nothing is in flight on an established
// connection, and none otherwise. Other fields are as read: within that
// moment they do not move unless the peer answers at once (loopback).
func (t TCPInfo) BeforeWrite(n int) TCPInfo {
	const established = 1 // TCP_ESTABLISHED
	sent := uint64(n) - min(uint64(t.NotSent), uint64(n))
	var acked uint64
	switch {
	case t.BytesSent != 0:
		// First transmissions less what was acknowledged (the SYN
		// counts one byte) is what is in flight.
		inFlight := sub(t.BytesSent-min(t.BytesRetrans, t.BytesSent)+1, t.BytesAcked)
		acked = sent - min(inFlight, sent)
	case t.Unacked == 0 && t.State == established:
		// Nothing in flight on a live connection (a reset one has
		// nothing in flight either).
		acked = sent
	}
	b := t
	b.BytesSent = sub(t.BytesSent, sent)
	b.BytesAcked = sub(t.BytesAcked, acked)
	b.NotSent = t.NotSent - min(t.NotSent, uint32(n))
	return b
}

// ReadTCPInfo reads TCP_INFO from a TCP connection, unwrapping c as
// [EffectiveMSS] does. It is supported on Linux; elsewhere it returns
// [ErrUnsupported].
//
// Polled after a write, TCPInfo tells a healthy but slow peer (BytesAcked
// moves, Unacked drops to 0) from a black hole (the head segment is never
// acknowledged: Sacked > 0 with BytesAcked unchanged, or retransmissions; on
// the way back, RcvOOOPack > 0 while BytesReceived stays 0).
func ReadTCPInfo(c net.Conn) (TCPInfo, error) {
	rc, err := rawTCPConn(c)
	if err != nil {
		return TCPInfo{}, err
	}
	return getTCPInfo(rc)
}

// maxUnwrap bounds the NetConn chain so that a wrapper returning itself
// cannot loop forever.
const maxUnwrap = 32

// rawTCPConn unwraps c down to a syscall.Conn with a TCP local address and
// returns its RawConn.
func rawTCPConn(c net.Conn) (syscall.RawConn, error) {
	for range maxUnwrap {
		if c == nil {
			return nil, ErrNotTCP
		}
		if sc, ok := c.(syscall.Conn); ok && isTCPAddr(c.LocalAddr()) {
			return sc.SyscallConn()
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, ErrNotTCP
		}
		c = w.NetConn()
	}
	return nil, ErrNotTCP
}

func isTCPAddr(a net.Addr) bool {
	if a == nil {
		return false
	}
	if _, ok := a.(*net.TCPAddr); ok {
		return true
	}
	switch a.Network() {
	case "tcp", "tcp4", "tcp6":
		return true
	}
	return false
}
