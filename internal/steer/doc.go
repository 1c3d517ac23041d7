// Package steer gives a server its own fix for clients behind a path-MTU
// black hole: new connections from chosen client prefixes are accepted
// with a clamped MSS, both ways, while every other client keeps full-size
// segments. Nothing changes on the client's side.
//
// # How
//
// [Listen] opens two listeners on one address with SO_REUSEPORT, twins in
// one reuseport group: the first unclamped, the second with TCP_MAXSEG set
// before it listens ([pmtu.ListenConfigWithMSS]), so that every connection
// it accepts advertises the clamp in its SYN-ACK and sends segments no
// larger. A classic BPF program attached to the group with
// SO_ATTACH_REUSEPORT_CBPF runs for each SYN and returns the index of the
// twin that takes it: 1, the clamped one, when the SYN's source address is
// in one of the prefixes given to [Group.SetClamped], 0 otherwise. The
// program reads the IP version nibble and the source address through
// SKF_NET_OFF (the packet's data starts after the TCP header there). All
// of this works without privileges (Linux 6.18, as nobody, no
// capabilities).
//
// [ListenTwins] opens more than one clamped twin, each with its own
// TCP_MAXSEG (one per family of a dual-stack group, one per rung of a
// ladder), and [Group.SetClamps] steers each prefix to the twin of its
// clamp: the program returns that twin's index.
//
// A [Group] is a [net.Listener]: Accept returns the next connection from
// either twin, as a *net.TCPConn. Serve it with any TLS stack
// ([crypto/tls.NewListener], [net/http.Server.ServeTLS], gRPC).
//
// # The reuseport group
//
// The index the program returns is a socket's position in the group, in
// the order the sockets joined it: the unclamped twin listens first (0),
// the clamped one second (1). Listen attaches a program that returns 0
// before the clamped twin joins, so no SYN is hashed to it by chance. Any
// other socket of the same user that listens on the same address with
// SO_REUSEPORT would join the group too and shift the indices: Listen
// returns a [*SharedError] when another socket listens on the address
// before or as the twins join (it looks in /proc/self/net/tcp and tcp6,
// and does not look when they cannot be read), but a socket that joins
// later goes unnoticed. Give each Group an address of its own. Programs are replaced atomically: a SYN is
// steered by the old program or the new one, never by none. Should a twin
// be closed alone (only Close closes them, both), the kernel moves the
// last socket into its slot: with the unclamped twin gone every SYN lands
// on the clamped one, and with the clamped twin gone an index out of range
// falls back to the kernel's hash over what remains, the unclamped twin.
//
// # Limits
//
// SetClamped takes prefixes of any length, IPv4 (/0 to /32) and IPv6 (/0
// to /128); IPv4-mapped IPv6 prefixes (::ffff:0:0/96 and longer) are taken
// as IPv4, which is how an IPv4 SYN reaches a dual-stack listener. Prefixes
// covered by another are dropped. At most [MaxPrefixes] remain, so that the
// program always fits the kernel's 4096 instructions; beyond that
// SetClamped returns a [*TooManyPrefixesError] and the previous program
// stays: aggregate first. The program runs once per SYN, a compare or two
// per prefix; established connections never run it. A loopback connection
// to a Group steering 399 prefixes that are not its own took 1.03× one to
// a plain listener in the same run, 1.00× with none (BenchmarkGroupRatio).
//
// Multipath TCP is off on both twins: on an MPTCP listener
// SO_ATTACH_REUSEPORT_CBPF fails with "operation not supported".
//
// Outside Linux, Listen returns a Group with one plain listener and
// SetClamped fails for any prefix with an error wrapping [ErrUnsupported].
package steer
