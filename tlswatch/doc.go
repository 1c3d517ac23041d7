// Package tlswatch tells a TLS server which client networks fail to
// complete their handshakes, why, and what to change: the server's side of
// fitshake.
//
// A Watcher wraps a net.Listener under any TLS stack without owning TLS.
// Each accepted connection follows the record headers of the first
// flights — the client's hello, our flight, the client's next flight —
// until the handshake completes or the connection ends (or stalls for
// StallAfter), then reads TCP_INFO once (Linux) and is judged; from then
// on it passes I/O through. No goroutine per connection, no timer per
// connection (stall checks share one bounded poller), nothing kept of a
// connection after its verdict.
//
// # Classes
//
// What the server's kernel shows, per connection (measured in the kernel
// lab, internal/lab, TestLabWatchServer):
//
//   - healthy: the client's next flight came after ours.
//   - blackhole-upstream: the hello's tail arrived out of order
//     (tcpi_rcv_ooopack > 0) and its head never did: the client's large
//     packets are lost on the way in.
//   - blackhole-downstream: our flight was retransmitted or its tail
//     SACKed, its head never acknowledged: ours are lost on the way out.
//   - hello-partial: part of the hello arrived in order, then nothing.
//   - reset: the client reset or closed during the handshake, nothing
//     lost.
//   - tls-error: an alert either way, or not TLS at all: not the path.
//   - idle: nothing arrived (a scanner, a health check): not a failure.
//
// A client whose handshake failed and whose next one, with a smaller MSS
// in its SYN, completed is counted as recovered: a fitshake client, or any
// that clamps.
//
// Handshakes are counted by client prefix (IPv4 /24, IPv6 /48 unless set)
// over a sliding window, for a bounded number of prefixes (the rest
// together). A prefix of mostly failures is logged (slog) when it starts
// failing and when it recovers; Status, and the status page the Watcher
// serves (ServeHTTP: HTML, or JSON), list each with its completion rate,
// class, evidence, and the fixes for its network team (the MSS clamp
// rule, ICMP), the server operator and the client, with the numbers
// measured.
//
// # Self-fix and metrics
//
// Policy decides, from N connections of a prefix lost to a black hole,
// that the prefix should be clamped, to what, and for how long: the clamp
// follows a ladder of path MTUs (1400, then 1280, each family's MSS),
// stepping down when N connections are lost under it, and lasts until it
// expires (handshakes that complete under it say nothing of the path: the
// prefix keeps its class). Listen builds the machinery in (reuseport
// twins, one per clamp, and a steering program); the Watcher also tells
// its Clamp, an interface, which prefixes are clamped. Trace's hooks see
// every verdict and every change, for metrics.
//
// # Use
//
//	w := &tlswatch.Watcher{}
//	ln, err := net.Listen("tcp", ":443")
//	if err != nil {
//		log.Fatal(err)
//	}
//	srv := &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second}
//	go http.ListenAndServe("127.0.0.1:8081", w) // the status page, on an admin port
//	log.Fatal(srv.ServeTLS(w.Wrap(ln), "cert.pem", "key.pem"))
package tlswatch
