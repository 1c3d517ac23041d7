// Package probe measures a network path to a TLS server the way an
// engineer with tcpdumps on both ends would, from the client alone and
// without root: whether a normal handshake completes, the largest IP packet
// that reaches the server (upstream) and the largest that comes back
// (downstream), whether ICMP-based path MTU discovery works, and what to
// change, for whom.
//
// # How
//
// Every measurement is one TCP connection that sends one ClientHello and
// nothing else, with the MSS clamped (TCP_MAXSEG before connect), and reads
// the kernel's view of it (TCP_INFO) every millisecond:
//
//   - upstream: a hello larger than a segment leaves as a full-size head
//     and a tail. The head acknowledged means packets of that size reach the
//     server; the tail SACKed while the head is not (or the head
//     retransmitted and never acknowledged) means they vanish. The verdict
//     comes in a round trip, not after a timeout. A kernel path MTU that
//     falls means an ICMP "fragmentation needed" / "packet too big" arrived:
//     discovery works.
//   - downstream: a small hello (one segment at any clamp) makes the server
//     send its handshake flight in segments no larger than the clamp. Bytes
//     arriving in order mean packets of that size come back; segments
//     arriving out of order with nothing in order (or nothing at all) mean
//     they vanish. The largest segment received (tcpi_rcv_mss) gives the
//     size exactly.
//
// Each limit is found by bisection between a size that got through and
// one that did not, to 8 bytes, in about seven connections. A server whose
// flight is smaller than a segment cannot show the downstream limit: the
// result then says the limit is at least what arrived.
//
// Two handshakes complete the picture: crypto/tls's own (with Go's
// ClientHello) and fitshake's Dialer (which recovers by itself and
// reports how). They verify the server's certificate with Options.Config
// (the system's roots and the host of the address by default; a private
// CA in RootCAs, another name in ServerName). The probes need no
// verification, and a handshake that fails only on the certificate still
// shows that the path carried it: the Result then measures the path all
// the same and says why the certificate does not verify
// (Result.Certificate), with its fix.
//
// Run makes at most Options.MaxConns connections, one at a time, paced,
// and stops by itself: about two dozen connections and well under ten
// seconds on a broken path, a handful and well under two seconds on a
// healthy one. It sends nothing but TCP connections and ClientHellos (the
// handshakes send what a handshake sends), and closes every connection
// with a reset.
//
// One side effect: on a system that clears DF (net.ipv4.ip_no_pmtu_disc=1)
// whose upstream probes are lost, a last probe sets DF to see whether ICMP
// comes back (fragments were being dropped); by that sysctl's rule the
// kernel then uses the 552-byte minimum path MTU towards the server for ten
// minutes, which gets small packets through.
//
// # Where it cannot measure
//
// The kernel's evidence is about the TCP peer. A server whose address is
// on this host is reached over the loopback, where no packet is too large
// and nothing is lost: a handshake that fails there fails in a program
// relaying the connection (a proxy that terminates TCP, such as package
// pmtutest's simulator), beyond the kernel's sight. Run then makes only
// the connect and crypto/tls's handshake: if the handshake completes, the
// path is healthy; if not, the Result says "cannot measure" and why
// (Result.CannotMeasure; Result.Err returns a *CannotMeasureError) instead
// of limits it did not see.
//
// Linux gives the whole measurement. Elsewhere, without TCP_INFO, Run
// checks the handshakes only and says what it could not measure.
package probe
