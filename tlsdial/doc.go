// Package tlsdial provides TLS dialers that keep handshakes alive on
// network paths that silently drop large packets, and report what worked.
//
// # The problem
//
// Behind a VPN or MPLS tunnel whose firewall blocks ICMP "fragmentation
// needed", TCP connects but every segment larger than the path MTU
// vanishes. The ClientHello is the first large packet (a Go 1.26 default
// hello is ~1500 bytes because of its X25519MLKEM768 key share), so the
// handshake hangs while plain HTTP works. A large server certificate flight
// fails the same way in the other direction.
//
// # What the dialers do
//
// Both dialers run one engine. Each attempt is a TCP connection with an
// MSS clamp from a ladder (none, then TCP_MAXSEG fitting path MTUs 1400,
// 1280 and 576, which shrink segments in both directions because the
// server obeys the MSS the client advertises), carrying the same
// ClientHello. While it waits for the reply, the socket's TCP_INFO is read
// every millisecond (Linux; the first read comes two round trips after the
// hello, at least 50 µs, where the process has not yet seen the
// destination answer a first attempt, and again after as long while
// nothing of the hello was acknowledged; these early reads are woken by a
// timerfd because the runtime's timers wake an idle process a millisecond
// late) and classified (pmtu.Classify):
//
//   - a black hole, upstream or downstream, or a reset or end of stream
//     before any reply, is conclusive: the attempt ends and the next clamp
//     is dialed at once;
//   - silence (nothing acknowledged after a few round trips, or no reply
//     for the stall window) is not: the next clamp is raced beside it,
//     paced (after the window, then 3, 6, 12 times it, as TCP's
//     retransmission timer backs off) and budgeted (the hedges in flight to
//     a destination are at most a tenth of the dials running to it, at
//     least 4), so that a slow server is not hit harder than crypto/tls
//     would hit it. A reply on a clamped attempt waits a few round trips
//     while an older, less reduced attempt may still answer: replies that
//     arrive together (a box holding connections and releasing them at
//     once) prefer the least reduced. An attempt still silent that sent its
//     hello earlier than the winner is reported as a stall, with the
//     winner's MSS in its diagnosis (Evidence.OvertakenBy);
//   - a box that refuses the hello itself (pmtu.Class.HelloRejected): the
//     hello's full-size head was acknowledged and then the flow was cut
//     (split-intolerant), or a hello that fit one segment was acknowledged
//     and reset, or hellos were reset even in 576-byte packets
//     (content-intolerant). A clamp cannot help: Dialer tries its compact
//     post-quantum hello at once, without a clamp, so that it travels in
//     one segment (racing the next clamp once, in case a proxy made a
//     refused packet look like a refused hello); TCPDialer, which cannot
//     change the TLS stack's hello, fails with a *HelloError naming the
//     class and the setting that gets through, and remembers it. Different
//     hellos all read whole and refused are a refusal of the connection
//     (pmtu.ClassRefused: a policy, or a port that does not speak TLS): the
//     dial fails, offering no weaker hello as the remedy;
//   - certificate and hostname failures, alerts and refused connects are
//     final.
//
// Only when every clamp failed conclusively, or the hello was refused, and
// only if Dialer.AllowClassical opts in, does a ClientHello without the
// post-quantum key share follow: silence never weakens the hello. (The
// compact hello weakens nothing; silence at the smallest clamp races it.) A dial
// with no step left ends by itself, at once after conclusive evidence, or
// once every attempt has been silent for 10 s (net/http's default
// TLSHandshakeTimeout; a slower server fails there too); when every hello
// was acknowledged, even at the smallest clamp, the error names a box that
// acknowledges for the server (pmtu.ClassProxy).
//
// What worked is remembered per destination (pmtu.Cache), so the next dial
// starts there — a clamp or a smaller hello only when every less reduced
// step tried ended conclusively — and so is a server's slowness, so that
// its dials stop racing. A destination not remembered starts clamped when
// its local network has shown that it needs a clamp: distinct sites dialed
// from it needed one (pmtu.Cache.LoadNetwork); what such a dial learns
// never counts as evidence about the network. Dials never wait for each
// other: each starts at once, and dials running to one destination tell
// each other what they saw, each piece once — a clamp shown to be needed
// starts at once in the others, a step that stalled conclusively makes
// them race the next, and once the server answered at a step, silence
// there is slowness.
//
// [Dialer] runs the handshake itself: its full hello is crypto/tls's, its
// smaller ones are built with utls (see package fingerprint), and
// [Dialer.Ladder] gives the exact size of each; [Transport] serves
// net/http with it. [TCPDialer] is for TLS stacks fitshake does not
// control (crypto/tls inside net/http, gRPC): it returns TCP connections
// that replay the stack's own ClientHello.
//
// # Reports and traces
//
// Every dial yields a [Report]: each attempt, in the order they started,
// with its ID, MSS, ClientHello size, rung, duration, outcome and
// diagnosis, and what completed. [Conn.Report] and [TCPConn.Report] return
// it (the latter also while the dial runs); a [Trace] attached to the
// dialer or to the context with [WithTrace] sees each event as it happens,
// in order, with no lock held; [MultiTrace] joins several (yours and a
// metrics adapter's, such as github.com/fitshake/fitshake/otel).
//
// # Security
//
// No rung disables certificate verification, goes below Config.MinVersion
// or offers non-AEAD cipher suites. Dropping the post-quantum key share is
// a real downgrade and happens only with Dialer.AllowClassical; the Report's
// SecurityReduced field says when it did.
package tlsdial
