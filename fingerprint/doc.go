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
//	rung       key shares              record bytes (SNI example.com, ALPN h2+http/1.1)
//	pq         X25519MLKEM768, X25519  1473   (TLS 1.3 only: 1438)
//	classical  X25519                   251   (TLS 1.3 only:  216; 517 for names of 21 bytes or more)
//
// With MaxVersion TLS 1.2 there is no key share and both rungs send the
// same 194-byte record. testdata/record_sizes.golden pins these numbers. RecordSize computes the
// size of a rung's record from Options alone, without generating keys;
// Build builds the utls connection state and reports the same size, which
// is exactly the first Write on the wire.
//
// # Why sizes matter
//
// Some paths silently drop packets larger than about 1,400 bytes. A
// post-quantum ClientHello (the X25519MLKEM768 key share alone is 1,216 bytes)
// never fits one such packet: even stripped of everything optional it is
// over 1,370 bytes of TLS record, more than a 1,400-byte IPv4 packet can
// carry. So fitshake first redials with a smaller TCP MSS, which splits the
// hello into segments that get through, and only if that fails, and only if
// the caller allows it, uses the classical rung: about 250 bytes, padded to
// 517 when needed, which fits one segment even at the minimum MSS of 536.
// No intermediate rung exists, because none could change that.
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
// The "classical" rung differs only by dropping the post-quantum share,
// which exposes the session to harvest-now-decrypt-later; Ladder includes
// it only when the caller opts in.
//
// No rung resumes sessions (no session_ticket, pre_shared_key or
// psk_key_exchange_modes extension: a PSK would add about 150 bytes and
// make the size depend on a cache, and without the modes a TLS 1.3 server
// issues no tickets nobody would use), or sends ECH or GREASE, whose sizes
// vary.
//
// # Key exchange groups and P-256-only servers
//
// Every group listed in supported_groups carries its key share, so a server
// never answers with a HelloRetryRequest (utls v1.8.2 aborts on one that
// asks for X25519MLKEM768). utls v1.8.2 also keeps the private key of only
// the first classical share, and runs X25519 with it even when the server
// picks the hybrid group. So a hello offers exactly one classical group,
// X25519, and X25519MLKEM768 beside it on the "pq" rung.
//
// As crypto/tls does, Build uses one X25519 key, fresh for each hello, for
// both the X25519 share and the X25519 half of the hybrid share (utls
// would generate one for each); the server may pick either group.
//
// As a consequence, servers that accept only P-256 (some FIPS
// configurations) fail the handshake with the default ladder. Callers who
// need them set Options.CurvePreferences (tls.Config.CurvePreferences) to
// P-256 without X25519: every rung then offers P-256 alone, classical.
// (Listing P-256 without its share, as crypto/tls does, would work through a
// HelloRetryRequest; it is not done, so that the measured hello is the only
// one ever sent.)
//
// # Concurrency
//
// Ladder, Rung methods, OptionsFrom and Build are safe for concurrent use.
// Build writes into the utls.Config it is given: use one Config per
// connection.
package fingerprint
