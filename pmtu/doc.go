// Package pmtu clamps the TCP maximum segment size of outgoing connections
// and reads what the kernel made of it, so that a TLS handshake fits through
// a network path that silently drops large packets.
//
// # Glossary
//
// MTU (maximum transmission unit): the largest IP packet, headers included,
// that one link carries. Ethernet's is 1500 bytes. Tunnels (VPNs, PPPoE,
// GRE, IPsec, mobile carriers) wrap packets in extra headers and so offer
// less: 1400-odd bytes is common.
//
// Path MTU: the smallest MTU over every link between two hosts. Only the
// path MTU matters: one 1400-byte hop in the middle caps the whole path at
// 1400 however large the MTU at either end.
//
// MSS (maximum segment size): the largest TCP payload in one segment. Each
// end announces the MSS it can receive in its SYN, derived from its own link
// MTU (1460 for IPv4 on Ethernet: 1500 − 20 IP − 20 TCP; 1440 for IPv6,
// whose header is 40 bytes). Both ends then also deduct the TCP options they
// carry on every segment, usually 12 bytes of timestamps, so a Linux peer on
// Ethernet sends 1448-byte segments (IPv6: 1428) in 1500-byte packets.
//
// Black hole: a path whose MTU is below what the endpoints assume and which
// drops the larger packets without saying so. Path MTU discovery relies on
// the router that cannot forward a packet sending back an ICMP
// "fragmentation needed" (IPv6: "packet too big"); firewalls that drop all
// ICMP, or tunnels that never send it, turn the path into a black hole.
// Small packets pass, large ones vanish, and the connection stalls with no
// error until some timeout fires: TCP connects, the first large write is
// never acknowledged, and nothing is ever reported.
//
// ClientHello size: the first message of a TLS handshake. It used to fit in
// a few hundred bytes; with a post-quantum key share (Go's default
// X25519MLKEM768 carries an 1184-byte ML-KEM public key) it is about 1500
// bytes, so it no longer fits in one segment of a path with an MTU below
// 1500, and a black hole swallows the handshake before the server sees it.
// The server's reply (certificate chain) is usually larger still, and is
// black-holed on its way back as well.
//
// # Why TCP_MAXSEG fixes both directions
//
// Setting the TCP_MAXSEG socket option before connect lowers the MSS that
// the client announces in its SYN. The server must not send segments larger
// than that, so the announced value caps the server→client direction, which
// the client cannot otherwise influence; and the client's own kernel uses
// the same value for client→server. On Linux the accepted MSS minus the
// options (timestamps, 12 bytes) then applies in both directions: a clamp of
// 1360 gives 1348-byte segments each way, that is 1400-byte IPv4 packets.
// No privilege, route change or system-wide setting is needed, and the clamp
// only affects the one connection.
//
// [MSSForMTU] turns a path MTU into the TCP_MAXSEG value that keeps every
// packet within it (MTU − 40 for IPv4, MTU − 60 for IPv6: the kernel deducts
// the options itself); [HeaderBytes] is the headers a segment's packet
// adds to its payload, options included. [ClampMSS] and [ClampMTU] return functions for
// [net.Dialer.Control]; [DialerWithMTU] and [DialerWithMSS] return a dialer
// with the clamp already composed with the dialer's own Control or
// ControlContext. On a server, [ListenConfigWithMTU] and
// [ListenConfigWithMSS] set TCP_MAXSEG on the listening socket, which
// clamps both directions of every connection it accepts (the SYN-ACK
// advertises it); set on an accepted connection it does nothing.
// [EffectiveMSS] and [ReadTCPInfo] read back what the kernel
// did, for reports and for detecting a stalled handshake.
//
// # Reading a stall
//
// [Classify] turns two TCP_INFO snapshots, one taken before a first flight
// was written and one after, into a [Diagnosis]: an upstream black hole
// (the head segment never acknowledged while the tail is SACKed, or a
// one-segment flight retransmitted with nothing acknowledged), a
// downstream one (the flight acknowledged, segments of the reply received
// out of order and none in order), a split-intolerant middlebox (a flight
// of several segments retransmitted with nothing SACKed: its small tail was
// lost too, which no MTU does), a silent server, or no verdict yet.
// Dialers add the classes TCP_INFO cannot see coming: a reset, and a
// content-intolerant box (Class.HelloRejected). Its String explains the
// evidence in one line and its Fix names the network-side remedy. The
// rules are tested against timelines recorded in a namespace lab
// (testdata/timelines).
//
// [Cache] remembers the sizes that worked per path, keyed by local network
// and destination ([KeyFor]; [LocalNetwork] names the route a dial takes,
// from the kernel on Linux). [OpenFileCache] keeps a Cache in a file as
// well, for the next process: asynchronous merged writes, safe with several
// processes at once. [Cache.LoadNetwork] reads a local network's prior from
// the entries: the clamp that distinct sites dialed from that network were
// each shown to need, for a destination the Cache does not know.
//
// # Platforms
//
// Linux supports everything in this package. On macOS, iOS and the BSDs the
// clamp and [EffectiveMSS] use the same TCP_MAXSEG socket option;
// [ReadTCPInfo] returns [ErrUnsupported]. On Windows and other platforms
// without a settable TCP_MAXSEG, [DialerWithMTU] and [DialerWithMSS] return
// [ErrUnsupported], and the functions from [ClampMSS] and [ClampMTU] fail
// every TCP dial with an error wrapping [ErrUnsupported] rather than silently
// dialing without the clamp. The listener clamp is Linux only (elsewhere
// it is not known to reach accepted connections): [ListenConfigWithMTU]
// and [ListenConfigWithMSS] return [ErrUnsupported] there.
//
// The package pmtutest emulates a black hole on loopback for tests.
package pmtu
