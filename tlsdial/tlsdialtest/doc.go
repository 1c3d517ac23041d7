// Package tlsdialtest helps test that a client falls back: that its
// requests get through a path that silently drops large packets, and how.
//
// [NewServer] starts an HTTPS test server (HTTP/2 and HTTP/1.1) that does
// not log the handshakes fitshake abandons. [NewClient] returns an
// [http.Client] whose transport is a [tlsdial.Transport] with a
// [pmtu.Cache] of its own, so that nothing learned in one test (or by
// another client in the same test) makes a dial start clamped, and whose
// Report method returns the [tlsdial.Report] of the connection that carried
// a response. [Recorder] does the same for any [http.RoundTripper], such
// as an [http.Transport] over a [tlsdial.TCPDialer]. Everything is closed
// when the test ends.
//
// Put the server behind [pmtutest.NewProxy], a userspace black hole on
// loopback that needs no privileges: the first attempt's ClientHello is
// dropped, and the dial recovers with an MSS clamp once its stall window
// (250 ms) has passed. The proxy acknowledges what it drops, so TCP_INFO
// shows only a silent server. For the kernel's view of a real black hole,
// [NewKernelPath] runs the test again inside a network namespace behind a
// router that drops the packets (Linux, as root), where fitshake reads the
// loss from TCP_INFO within a round trip.
//
// For other dialers, give each its own cache in the same way:
// &tlsdial.TCPDialer{Cache: new(pmtu.Cache)}.
package tlsdialtest
