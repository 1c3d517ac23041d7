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
// An attempt whose server stays silent past the stall window after the
// ClientHello is declared stalled, closed, and redialed down a ladder:
// first with TCP MSS clamps (TCP_MAXSEG before connect, fitting path MTUs
// 1400, 1280, 576), which shrink segments in both directions because the
// server obeys the MSS the client advertises; then, only when
// Dialer.AllowClassical opts in, with a smaller ClientHello that drops the
// post-quantum key share. Errors that are not stalls are returned at once.
// What worked is remembered per destination (pmtu.Cache), so the next dial
// starts there, and concurrent dials to a destination being discovered
// wait for the discovery instead of all stalling.
//
// [Dialer] builds the ClientHello itself (with utls, see package
// fingerprint), so its exact size is known before it is sent. [TCPDialer]
// is for TLS stacks fitshake does not control (crypto/tls inside net/http,
// gRPC): it returns TCP connections that replay the stack's own ClientHello
// on a smaller MSS when it stalls.
//
// # Reports and traces
//
// Every dial yields a [Report]: each attempt's MSS, ClientHello size,
// rung, duration and outcome, and what completed. [Conn.Report] and
// [TCPConn.Report] return it; a [Trace] attached to the dialer or to the
// context with [WithTrace] sees each event as it happens.
//
// # Security
//
// No rung disables certificate verification, goes below Config.MinVersion
// or offers non-AEAD cipher suites. Dropping the post-quantum key share is
// a real downgrade and happens only with Dialer.AllowClassical; the Report's
// SecurityReduced field says when it did.
package tlsdial
