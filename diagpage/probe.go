package diagpage

import (
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/fitshake/fitshake/internal/reset"
	"github.com/fitshake/fitshake/pmtu"
)

// errStuck is a write that could not leave in writeBudget.
var errStuck = errors.New("diagpage: the browser stopped taking data")

// pollEvery is how often the server reads TCP_INFO while it waits: for a
// downstream probe's ACK, or for a chunk to leave. A read costs about a
// microsecond.
const pollEvery = time.Millisecond

// readInfo reads TCP_INFO on c where the platform has it.
func readInfo(c net.Conn) (pmtu.TCPInfo, bool) {
	if !platform.tcpInfo {
		return pmtu.TCPInfo{}, false
	}
	ti, err := pmtu.ReadTCPInfo(c)
	return ti, err == nil
}

// timestamps reports whether the connection's segments carry TCP
// timestamps; without TCP_INFO it assumes so (Linux, macOS and iOS
// browsers use them; Windows does not by default).
func timestamps(ti pmtu.TCPInfo, ok bool) bool {
	return !ok || ti.Options&1 != 0
}

// measureRequest tells what arrived of the request r on the fresh
// connection c: its size as one packet and in how many segments it came.
//
// With TCP_INFO, the bytes received on the connection (a probe is its
// only request), the data segments received, and the largest segment
// (tcpi_rcv_mss: the largest seen, from 536 up) are exact. Without it,
// the size is the request's length as net/http parsed it, and the
// segments are unknown.
func measureRequest(c net.Conn, r *http.Request) upResult {
	ti, ok := readInfo(c)
	hdr := pmtu.HeaderBytes(isIPv6(c), timestamps(ti, ok))
	if !ok {
		n := requestLen(r) + hdr
		return upResult{Size: n, Max: n}
	}
	rx := int(ti.BytesReceived)
	res := upResult{Size: rx + hdr, Max: rx + hdr, Segs: int(ti.DataSegsIn)}
	if res.Segs > 1 {
		res.Split = true
		res.Max = min(int(ti.RcvMSS), rx) + hdr
	}
	return res
}

// sendProbe writes a downstream probe of size bytes (as one packet) on c,
// then its tail once the browser acknowledged the first segment, or resets
// c when it did not within ackTimeout (zero: adaptive; see
// Handler.AckTimeout). It closes c and returns the bytes written.
//
// The first segment is one write of exactly size minus the headers' bytes
// (TCP_NODELAY is on and nothing else is in flight): the kernel sends it as
// one segment when it fits the send MSS, and splits it otherwise, which
// the tail reports. TCP_MAXSEG cannot make the kernel send smaller
// segments instead: on an established socket it changes nothing (see the
// package documentation).
func sendProbe(c net.Conn, size int, ackTimeout time.Duration) int {
	ti0, ok := readInfo(c)
	hdr := pmtu.HeaderBytes(isIPv6(c), timestamps(ti0, ok))
	first, tailN := probeHead(size - hdr)
	if first == nil {
		c.Close()
		return 0
	}
	n, err := c.Write(first)
	if err != nil {
		c.Close()
		return n
	}
	tail := downTail{OK: true, Max: size}
	if ok {
		wait := ackTimeout
		if wait <= 0 {
			wait = min(4*ti0.RTT+400*time.Millisecond, MaxAckTimeout)
		}
		ti, delivered := waitAcked(c, ti0, len(first), wait)
		if !delivered {
			// Lost: reset, so that the browser learns at once. The
			// reset's sequence number is past the hole; Linux answers
			// it with a challenge ACK, which draws an exact reset from
			// the server's kernel (measured).
			reset.Close(c)
			return n
		}
		tail.Judged = true
		if mss := int(ti.SndMSS); mss > 0 && mss < len(first) {
			tail.Split, tail.Max = true, mss+hdr
		}
	}
	m, _ := c.Write(encodeTail(tail, tailN))
	c.Close()
	return n + m
}

// waitAcked polls TCP_INFO until the browser has acknowledged n more bytes
// than at base, or wait passes.
func waitAcked(c net.Conn, base pmtu.TCPInfo, n int, wait time.Duration) (pmtu.TCPInfo, bool) {
	deadline := time.Now().Add(wait)
	for {
		ti, err := pmtu.ReadTCPInfo(c)
		if err != nil {
			return ti, false
		}
		if ti.BytesAcked-base.BytesAcked >= uint64(n) {
			return ti, true
		}
		if time.Now().After(deadline) {
			return ti, false
		}
		time.Sleep(pollEvery)
	}
}

// writeSmall writes b to c in packets of at most chunk bytes of payload,
// and returns the bytes written.
//
// The kernel appends a write to the last unsent segment, up to the MSS:
// consecutive small writes would leave as full-size packets whenever the
// congestion window or autocorking holds them back, and a downstream black
// hole would eat them (TCP_MAXSEG on an accepted socket does not help; see
// the package documentation). So each write waits until nothing is unsent
// (tcpi_notsent_bytes is 0): the next one then starts a segment of its own.
// A segment lost and retransmitted later may still be merged with its
// neighbours by the kernel; that takes a loss of a small packet first.
// Without TCP_INFO, b is written at once.
func writeSmall(c net.Conn, b []byte) (int, error) {
	if _, ok := readInfo(c); !ok {
		return c.Write(b)
	}
	written := 0
	deadline := time.Now().Add(writeBudget)
	for len(b) > 0 {
		for {
			ti, err := pmtu.ReadTCPInfo(c)
			if err != nil {
				return written, err
			}
			if ti.NotSent == 0 {
				break
			}
			if time.Now().After(deadline) {
				return written, errStuck
			}
			time.Sleep(pollEvery)
		}
		n, err := c.Write(b[:min(chunk, len(b))])
		written += n
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}
