// Package fingerprint builds the ClientHellos fitshake sends, as a ladder of
// decreasing sizes, each measured to the byte before anything is sent.
//
// # Rungs
//
// A Rung is a factory of utls ClientHello specs. Given the per-connection
// Options (server name, ALPN, version bounds), it builds a new spec on every
// call: a utls spec holds the key shares of one connection and must never be
// reused. Ladder returns the rungs, largest first:
//
//	rung        key shares              record bytes (SNI example.com, ALPN h2+http/1.1)
//	pq          X25519MLKEM768, X25519  1479   (TLS 1.3 only: 1444)
//	pq-compact  X25519MLKEM768, X25519  1418   (TLS 1.3 only: 1395)
//	classical   X25519                   257   (TLS 1.3 only:  222; 517 for names of 15 bytes or more)
//
// With MaxVersion TLS 1.2 there is no key share: "pq" and "classical" send
// the same 200-byte record, "pq-compact" 139. testdata/record_sizes.golden
// pins these numbers. RecordSize computes the size of a rung's record from
// Options alone, without generating keys; Build builds the utls connection
// state and reports the same size, which is exactly the first Write on the
// wire.
//
// The full post-quantum rung offers what crypto/tls offers, and crypto/tls
// can send it itself: Rung.StdConfig gives the Config for that (the
// caller's, held to the ladder's rules), StdHello builds the record
// crypto/tls writes (1513 bytes for the example above with Go 1.26: a few
// extensions more than the spec), and HasPostQuantumShare tells whether it
// carries the post-quantum share, which GODEBUG tlsmlkem=0 takes away.
// tlsdial.Dialer sends its full hello that way, and the spec where it
// cannot.
//
// # Why sizes matter
//
// Some paths silently drop packets larger than about 1,400 bytes. A
// post-quantum ClientHello (the X25519MLKEM768 key share alone is 1,216 bytes)
// never fits one such packet: even stripped of everything optional it is
// over 1,370 bytes of TLS record, more than a 1,400-byte IPv4 packet can
// carry. So fitshake first redials with a smaller TCP MSS, which splits the
// hello into segments that get through.
//
// Other paths pass large packets but not large hellos: an inspecting
// firewall that fails when the hello spans two TCP segments, or one that
// rejects a hello over some size or with an extension it does not know.
// For them the "pq-compact" rung keeps both key shares and leaves out what
// the Options do not need (Rung.Compact), so that it fits one full-size
// segment for common server names (1,448 bytes of payload on IPv4 with TCP
// timestamps, 1,428 on IPv6): 1,407 bytes plus the name with ALPN h2 and
// http/1.1. It is not a downgrade.
//
// The "classical" rung, about 250 bytes, padded to 517 when needed, fits
// one segment even at the minimum MSS of 536; it drops the post-quantum
// share, and only callers who opt in get it.
//
// Every rung keeps its handshake message out of the 256–511 byte range,
// which some TLS terminators hang on, with BoringSSL-style padding.
//
// # Security stance
//
// The first rung, "pq", is what a modern Go client offers: TLS 1.3 and 1.2
// within Options' bounds (never below MinVersion; nothing below TLS 1.2,
// and Build tells utls to refuse a ServerHello below the bound), only AEAD
// cipher suites with forward secrecy (TLS 1.3 AES-GCM and ChaCha20-Poly1305;
// TLS 1.2 ECDHE-ECDSA/RSA with AES-GCM and ChaCha20-Poly1305: no CBC, no RSA
// key exchange), Go's signature algorithms (no SHA-1), extended master
// secret, secure renegotiation indication, OCSP stapling and SCT requests,
// and a hybrid post-quantum key share. Certificate verification is whatever
// the utls.Config says; this package never touches it.
//
// The "pq-compact" rung offers the same versions, key exchange and AEAD
// suites, and a signature algorithm for every key type crypto/tls accepts;
// it sends an empty legacy session ID (crypto/tls sends a random one for
// RFC 8446's middlebox compatibility mode, which a QUIC hello omits too).
//
// The "classical" rung differs from "pq" only by dropping the post-quantum share,
// which exposes the session to harvest-now-decrypt-later; Ladder includes
// it only when the caller opts in.
//
// No rung resumes sessions (no session_ticket, pre_shared_key or
// psk_key_exchange_modes extension: a PSK would add about 150 bytes and
// make the size depend on a cache, and without the modes a TLS 1.3 server
// issues no tickets nobody would use), or sends ECH or GREASE, whose sizes
// vary.
//
// # Key exchange groups
//
// Every rung lists the classical groups X25519, P-256, P-384 and P-521 (as
// crypto/tls does, within Options.CurvePreferences), and sends a key share
// for the first only: utls v1.8.2 keeps the private key of only the first
// classical share. A TLS 1.3 server that accepts only P-256, P-384 or P-521
// asks for its share with a HelloRetryRequest, which utls answers, and a
// TLS 1.2 server finds the curve of its ECDSA certificate listed (OpenSSL
// refuses the certificate otherwise). X25519MLKEM768 is listed only with
// its share, beside the X25519 one: utls v1.8.2 aborts on a
// HelloRetryRequest for it. Build uses one X25519 key, fresh for each
// hello, for both the X25519 share and the X25519 half of the hybrid share,
// as crypto/tls does (utls would generate one for each).
//
// The record size is that of the first ClientHello; after a
// HelloRetryRequest the second is a classical one, smaller.
//
// # Concurrency
//
// Ladder, Rung methods, OptionsFrom and Build are safe for concurrent use.
// Build writes into the utls.Config it is given: use one Config per
// connection.
package fingerprint
