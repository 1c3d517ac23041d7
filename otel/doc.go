// Package fitshakeotel records fitshake's dials, and the handshakes a
// tlswatch.Watcher watches, as OpenTelemetry metrics.
//
// It lives in a module of its own, github.com/fitshake/fitshake/otel, so
// that the core module (github.com/fitshake/fitshake) does not depend on
// OpenTelemetry: users who do not want it never download it. The core
// offers hooks ([tlsdial.Trace], [tlswatch.Trace]); this package turns them
// into instruments of a [metric.MeterProvider] (the global one unless
// [WithMeterProvider] says otherwise), as otelhttp and grpc-go's
// stats/opentelemetry do.
//
//	trace, err := fitshakeotel.NewClientTrace(fitshakeotel.WithMeterProvider(mp))
//	d := &tlsdial.Dialer{Trace: trace} // or TCPDialer.Trace, Transport.Dialer
//
//	metrics, err := fitshakeotel.NewServerTrace(fitshakeotel.WithMeterProvider(mp), fitshakeotel.WithServerAddr(":443"))
//	w := &tlswatch.Watcher{Trace: metrics}
//
// A dialer that has a Trace of its own takes both with
// [tlsdial.MultiTrace], a Watcher with [tlswatch.MultiTrace].
//
// # Client instruments
//
// Each dial is recorded once, when it ends (the Trace's Done hook): for a
// [tlsdial.Dialer] when the handshake completed or failed, for a
// [tlsdial.TCPDialer] connection when the server's first byte arrived, or
// the dial gave up or was closed before that. A TCPDialer does not see the
// TLS stack above it: its certificate and alert failures are not counted
// as failed dials.
//
//	name                               kind       unit       attributes
//	fitshake.client.dials              counter    {dial}     server.address, server.port, error.type, tls.protocol.name, tls.protocol.version
//	fitshake.client.dial.duration      histogram  s          server.address, server.port, error.type, tls.protocol.name, tls.protocol.version
//	fitshake.client.recovered_dials    counter    {dial}     server.address, server.port, fitshake.path.class, fitshake.mss, fitshake.rung
//	fitshake.client.recovery.duration  histogram  s          server.address, server.port, fitshake.path.class
//	fitshake.client.attempts           counter    {attempt}  server.address, server.port, fitshake.attempt.outcome, fitshake.mss, fitshake.rung
//	fitshake.client.stalls             counter    {attempt}  server.address, server.port, fitshake.path.class, fitshake.mss
//	fitshake.client.hellos_rejected    counter    {attempt}  server.address, server.port, fitshake.path.class, fitshake.rung
//
// What each one counts:
//
//   - dials: every dial, completed or not; error.type is set only when it
//     failed (see below).
//   - dial.duration: the dial's wall time (Report.Duration), every attempt
//     and wait included.
//   - recovered_dials: dials that completed after at least one attempt
//     stalled or was reset ([tlsdial.DoneInfo.Recovered]): the path lost
//     or refused a default dial and fitshake got past it. fitshake.path.class
//     is what it got past (Report.Diagnosis), fitshake.mss and fitshake.rung
//     what worked.
//   - recovery.duration: the wall time of those dials: how long a user
//     behind that path waited.
//   - attempts: every TCP connection a dial opened, by how it ended.
//   - stalls: attempts that connected and sent their ClientHello and got
//     no reply (Outcome "stall"), by what TCP_INFO showed.
//   - hellos_rejected: attempts whose ClientHello a box on the path refused
//     itself, whatever the packet size (pmtu.Class.HelloRejected): no
//     clamp gets past it; a Dialer tries its compact hello, a TCPDialer
//     fails with tlsdial.ErrHelloRejected.
//
// Durations are in seconds, with bucket boundaries from 1 ms to 30 s
// (see [DurationBuckets]): a handshake on a LAN takes milliseconds, a dial
// that met a silent path waits at least one stall window (250 ms or more)
// before its clamped attempt, further windows at 3 and 6 times it, and
// gives up after 10 s of silence.
//
// # Client attributes
//
//   - server.address, server.port (stable OTel conventions): the host and
//     port the dial was given, as given (a name or an IP address). A
//     client talking to a few services keeps this bounded; one that dials
//     arbitrary hosts (a crawler, a proxy) should drop server.address with
//     [WithoutServerAddress].
//   - error.type (stable): on failed dials only, one of "stalled" (every
//     clamp stalled, tlsdial.ErrStalled), "hello_rejected"
//     (tlsdial.ErrHelloRejected), "certificate" (verification failed),
//     "tls_alert" (the server sent an alert), "connection_refused",
//     "connection_reset", "timeout" (a deadline, the context's or the
//     dialer's), "canceled" (the context was canceled or the connection
//     closed), else "_OTHER".
//   - tls.protocol.name, tls.protocol.version (OTel conventions, in
//     development): "tls" and "1.3" or "1.2", on a Dialer's dials that
//     completed ([tlsdial.DoneInfo.ConnectionState]); a TCPDialer does not
//     see the handshake above it.
//   - fitshake.attempt.outcome: one of "ok", "stall", "reset", "error",
//     "canceled", "superseded" (tlsdial.Outcome's String).
//   - fitshake.path.class: pmtu.Class's String, the same words as the
//     Report and the logs: "upstream black hole", "downstream black
//     hole", "silent server", "reset", "split-intolerant middlebox",
//     "hello-intolerant middlebox", "hello refused after reading", "box
//     acknowledging for the server", "unknown" (no TCP_INFO: other systems,
//     TimerOnly).
//   - fitshake.mss: the TCP MSS clamp the attempt used, or that worked; 0
//     for none. Its values come from the dialers' short ladder of path
//     MTUs (1400, 1280, 576: MSS 1360, 1240, 536 on IPv4, 20 less on
//     IPv6).
//   - fitshake.rung: the Dialer's ClientHello ("pq", "pq-compact",
//     "classical"); absent for a TCPDialer, which replays the TLS stack's
//     own hello.
//
// # Server instruments
//
// [NewServerTrace] returns a [tlswatch.Trace] for one Watcher. Each
// watched connection is recorded once, at its verdict (the Handshake
// hook): when its handshake completed, when it failed or the connection
// ended first, or when it was still open after the watcher's StallAfter.
//
//	name                                   kind             unit         attributes
//	fitshake.server.handshakes             counter          {handshake}  server.address, server.port, tls.established, fitshake.handshake.class, error.type
//	fitshake.server.handshake.duration     histogram        s            server.address, server.port, tls.established, error.type
//	fitshake.server.recovered_handshakes   counter          {handshake}  server.address, server.port
//	fitshake.server.failing_prefixes       up-down counter  {prefix}     server.address, server.port
//	fitshake.server.clamped_prefixes       gauge            {prefix}     server.address, server.port, fitshake.mss
//	fitshake.server.clamp.changes          counter          {change}     server.address, server.port, error.type
//
// What each one counts:
//
//   - handshakes: every watched connection, by its verdict: completed
//     (tls.established true, class healthy), failed (tls.established
//     false, error.type and fitshake.handshake.class the class), or idle
//     (tls.established false, class idle, no error.type: nothing was
//     tried — a scanner, a health check, a client that raced connections
//     and took another).
//   - handshake.duration: for each handshake tried, completed or failed
//     (not the idle ones), the time from accept to the verdict: to the
//     client's second flight for a completed one
//     ([tlswatch.HandshakeInfo].Duration), to the end or the stall check
//     for a failed one (its Evidence.Elapsed: StallAfter, 5 s by default,
//     for a black hole with the connection still open), in the
//     [DurationBuckets].
//   - recovered_handshakes: completed handshakes from a client address
//     whose earlier handshake failed, with a smaller MSS in its SYN this
//     time (HandshakeInfo.Recovered): a fitshake client, or any that
//     clamps, got past the path that failed it.
//   - failing_prefixes: the client prefixes failing now (the Prefix hook:
//     one up when a prefix starts failing, one down when it recovers; a
//     recovery is noticed at the prefix's next verdict or the next
//     Watcher.Status call, such as the status page's). Which prefixes,
//     and why, is the status page's business: no prefix is an attribute.
//   - clamped_prefixes: how many prefixes the self-fix clamps now (the
//     Clamp hook: the set the watcher decided, as the status page's
//     "clamped"), a series per clamp, fitshake.mss: each prefix's rung
//     of the Policy's ladder for its family (ClampInfo.Clamps: 1360 and
//     1340 for a 1400-byte path), or Policy.MSS; a clamp no prefix has any
//     more reads 0.
//   - clamp.changes: each change of that set the listener machinery was
//     told (Watcher.Clamp, the listeners of Watcher.Listen); error.type
//     "unsupported" where the platform cannot steer connections by prefix
//     (tlswatch.ErrSelfFixUnsupported: everywhere but Linux), "_OTHER" for
//     any other error, absent when it was applied.
//
// Attributes of the server instruments:
//
//   - server.address, server.port (stable): from [WithServerAddr], the
//     address the watched listeners serve; server.address only for a
//     name or an address of the listener's own (not ":443" or
//     "[::]:443"), and not with [WithoutServerAddress]. The Watcher does
//     not tell which listener a connection came from: give one Watcher,
//     and one Trace, per served address if they must be told apart.
//   - tls.established (OTel conventions, in development): whether the
//     handshake completed, as far as the path is concerned (the client's
//     second flight came). The watcher reads record headers, never the
//     TLS session: tls.protocol.version and tls.cipher are unknown to it.
//   - error.type (stable): on failed handshakes, their class; on a failed
//     clamp change, "unsupported" or "_OTHER".
//   - fitshake.handshake.class: tlswatch.Class's JSON string, the status
//     page's words: "healthy", "idle", "blackhole-upstream",
//     "blackhole-downstream", "reset", "tls-error", "hello-partial"
//     ("blackhole", both directions, is a prefix's class, never a
//     connection's).
//
// No attribute ever holds a client's address or prefix, or anything else
// that grows with the traffic. fitshake's own attributes are under
// fitshake.: the rung, the clamp and the path's class are not TLS session
// properties that the tls.* conventions name.
package fitshakeotel
