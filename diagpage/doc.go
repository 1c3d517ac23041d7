// Package diagpage is a diagnostic web page for paths that silently drop
// large packets. A server operator mounts [Handler] on a plain-HTTP port
// (the port that still works when TLS does not); a person on the affected
// network opens it in a browser, and the page measures the largest IP
// packet that gets through in each direction between that browser and the
// server, names the class of the path and shows the fix lines for their
// network team (package internal/verdict's wording, shared with the
// diagnose command).
//
//	mux.Handle("/fitshake/", &diagpage.Handler{})
//
// When the page is done it sets document.title to "fitshake: done" and puts
// the JSON summary, the same fields as the diagnose command's -json
// (healthy, upstream_mtu, downstream_mtu, class, fixes), in the element with
// id "result", for scripts and tests.
//
// # Glossary
//
//   - packet size: an IP packet's length, headers included; what a path's
//     MTU bounds. A TCP segment of n payload bytes is a packet of n + 52
//     bytes on IPv4 (20 IP, 20 TCP, 12 of timestamps) and n + 72 on IPv6.
//   - upstream: browser to server; downstream: server to browser.
//   - a probe: one HTTP request on a fresh connection whose request
//     (upstream) or first response segment (downstream) is one packet of a
//     chosen size.
//   - limit: the largest packet size seen to get through whole, found by
//     search to within 8 bytes; 1500 when a 1500-byte packet gets through.
//
// # Method
//
// Every endpoint hijacks the HTTP/1.1 connection, so that the server can
// read TCP_INFO on the browser's own connection and write bytes of exact
// sizes, and answers with "Connection: close": each probe gets a fresh
// connection, and a lost segment stalls only its own probe.
//
// Upstream: the browser sends GETs padded (in the query string) to a
// chosen size, each one segment. The server reads TCP_INFO: the bytes
// received (tcpi_bytes_received), in how many segments
// (tcpi_data_segs_in), the largest segment (tcpi_rcv_mss) and whether
// timestamps are on, and answers with the packet size that arrived. The
// first, small probe calibrates the request's overhead (Chrome's headers do
// not change between probes), so the size of a probe that never arrives is
// known too. A lost request shows only as a timeout in the browser (an
// AbortController; the server never sees it), so those cost a timeout each.
//
// Downstream: the browser asks for a response whose first segment is a
// packet of a chosen size. The server writes the response head and padding
// in one write of exactly that many TCP payload bytes (TCP_NODELAY, nothing
// in flight: one segment), then polls its own TCP_INFO until
// tcpi_bytes_acked covers it. Delivered: it appends a small tail that tells
// the page so, and whether the kernel had to send smaller segments (the
// send MSS fell below the probe: path-MTU discovery at work, or the
// browser's own smaller MSS). Not acknowledged within [Handler.AckTimeout]:
// it resets the connection (SO_LINGER 0), and the browser's fetch fails at
// once instead of waiting for its own timeout.
//
// Both directions are searched from 1500 down, three probes at a time (a
// four-way split of the interval), to within 8 bytes; the smallest size
// seen lost is then probed once more, so that one stray timeout does not
// lower the limit. The page then asks the server for the summary: the class
// and limits, and [verdict.Fixes]'s lines for the path.
//
// The pages, the summary and other replies larger than one small packet
// are written 480 bytes at a time, each write only after the previous one
// has left (tcpi_notsent_bytes is 0): the kernel would otherwise append the
// next write to an unsent segment and send full-size packets, which a
// downstream black hole eats. 480 payload bytes make a packet of 532 bytes
// on IPv4 and 552 on IPv6, under the 576 that every IPv4 path must carry.
//
// Measured on Linux 6.18 (the fitshake lab, 2026-11): TCP_MAXSEG set on an
// accepted, established socket is accepted without error but changes
// nothing: getsockopt(TCP_MAXSEG) and tcpi_snd_mss stay 1448 and the
// segments stay full-size (the kernel takes the MSS clamp from the listener
// at the handshake). Clamping segments after the fact therefore means
// writing them one at a time, as above. A write of exactly n ≤ MSS bytes
// with TCP_NODELAY and nothing unsent goes out as one segment of n bytes:
// through a 1400-byte black hole, 1348 payload bytes (1400 on IPv4) were
// acknowledged and 1349 were not; 1328 and 1329 on IPv6. A request of n
// bytes in one segment shows as tcpi_bytes_received = n and tcpi_rcv_mss =
// n (for n ≥ 536). The reset sent after a lost segment reaches the browser
// (its sequence number is past the hole, so Linux first answers with a
// challenge ACK, and the server's kernel's reset to that is exact).
//
// # Bounds
//
// One client (one IPv4 address, or one IPv6 /64) may hold at most
// [Handler.MaxConns] connections in the handler at once and exchange at most
// [Handler.MaxBytes] bytes with it per minute (requests as received,
// responses as written); beyond either it gets 429 Too Many Requests with
// Retry-After. No probe is larger than 1500 bytes each way, a downstream
// probe holds its connection at most [Handler.AckTimeout] (3 s by
// default), and a page or summary write gives up after 20 s. A request
// that never arrives (an upstream probe that is lost) is not seen by the
// handler at all: the server's own http.Server.ReadHeaderTimeout bounds
// those connections; set it.
//
// # Limits
//
// The server must see the browser's TCP connection itself: no reverse
// proxy, load balancer or CDN in front (they terminate TCP and the
// measurements would be of their path), plain HTTP/1.1 (not TLS: the
// record overhead would skew every size; the probes refuse a TLS
// connection). On Linux everything above is measured. Elsewhere there is
// no TCP_INFO: upstream sizes come from the request's length and assume
// TCP timestamps (±12 bytes), a lost downstream probe shows only as the
// browser's timeout (slower), and the page cannot tell path-MTU discovery
// at work from a clean path; the page says so.
package diagpage
