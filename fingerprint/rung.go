package fingerprint

import (
	"crypto/tls"
	"errors"

	utls "github.com/refraction-networking/utls"
)

// Names of the rungs returned by Ladder. They are stable: logs, metrics and
// golden files key on them.
const (
	// NamePostQuantum is the first rung: a modern client hello with an
	// X25519MLKEM768 key share, as crypto/tls sends it.
	NamePostQuantum = "pq"
	// NameCompact is the one-segment post-quantum rung: the same key
	// shares, without what the Options do not need (see Rung.Compact), so
	// that its record fits one full-size TCP segment.
	NameCompact = "pq-compact"
	// NameClassical is the small rung: no post-quantum share, padded to
	// 517 record bytes so that it fits one TCP segment even at MSS 536.
	NameClassical = "classical"
)

// Rung is one step of the ClientHello ladder: a factory of ClientHello specs
// that differ only by what the connection needs (Options). A spec is built
// fresh on every call and must never be shared between connections (a utls
// spec carries the key shares generated for one connection).
//
// The zero Rung is not usable; get rungs from Ladder.
type Rung struct {
	// Name is short and stable: NamePostQuantum, NameCompact or
	// NameClassical.
	Name string
	// PostQuantum reports that the rung sends an X25519MLKEM768 key share
	// whenever TLS 1.3 is offered and Options.CurvePreferences allows it
	// (Hello.PostQuantum tells for one built hello).
	PostQuantum bool
	// Compact reports that the rung leaves out what the Options do not
	// need: the 32-byte legacy session ID (RFC 8446 middlebox
	// compatibility), OCSP and SCT requests (unless
	// Options.CertificateStatus), signature algorithms beyond one per key
	// type, and TLS 1.2 suites beyond one per certificate type. Key
	// shares, groups, versions, SNI and ALPN are those of the full rung.
	Compact bool

	// valid is set on the rungs of Ladder, false in the zero Rung.
	valid bool
}

var (
	rungPostQuantum = Rung{Name: NamePostQuantum, PostQuantum: true, valid: true}
	rungCompact     = Rung{Name: NameCompact, PostQuantum: true, Compact: true, valid: true}
	rungClassical   = Rung{Name: NameClassical, PostQuantum: false, valid: true}
)

// Ladder returns the rungs in order, largest ClientHello first, in a new
// slice: "pq", "pq-compact" and, with allowClassical, "classical". Without
// allowClassical no rung drops the post-quantum share. When Options offer
// only TLS 1.2, or exclude the hybrid group, no rung carries it: compare
// RecordSize and skip a rung that is not smaller than the one before.
//
// The compact rung exists for middleboxes, not MTUs. No post-quantum hello
// fits one 1,400-byte packet (the X25519MLKEM768 share alone is 1,216
// bytes), so on a path that drops large packets only the TCP MSS helps.
// But an inspecting firewall that fails on a hello split across two
// segments passes one that fits a single full-size segment: 1,448 bytes of
// payload on a 1,500-byte IPv4 path with TCP timestamps, 1,428 on IPv6.
// The compact hello is 1,407 record bytes plus the server name's length
// (with ALPN h2 and http/1.1), so it fits one IPv4 segment for names up to
// 41 bytes and one IPv6 segment up to 21. It weakens nothing: the same
// key exchange, versions and AEAD suites, and a signature algorithm for
// every certificate key type crypto/tls accepts.
func Ladder(allowClassical bool) []Rung {
	if allowClassical {
		return []Rung{rungPostQuantum, rungCompact, rungClassical}
	}
	return []Rung{rungPostQuantum, rungCompact}
}

var errZeroRung = errors.New("fingerprint: zero Rung (use Ladder)")

// Spec returns a new ClientHello spec of r for o, or nil when r is the zero
// Rung or o is invalid (Build and RecordSize report why; see
// Options.Validate). Each call builds a new spec, never shared. Its key
// shares carry no data: utls generates them when the spec is applied, with
// a separate X25519 key for the hybrid share (Build shares one instead).
func (r Rung) Spec(o Options) *utls.ClientHelloSpec {
	s, _, err := r.spec(o)
	if err != nil {
		return nil
	}
	return s
}

// RecordSize returns the exact size in bytes of the TLS record that carries
// the ClientHello of r for o, computed without generating any key. It equals
// Build's Hello.RecordSize.
func (r Rung) RecordSize(o Options) (int, error) {
	p, err := r.plan(o)
	if err != nil {
		return 0, err
	}
	return p.recordSize(), nil
}

// SendsPostQuantum reports whether hellos of r for o carry an
// X25519MLKEM768 key share: false on a classical rung, and also on the
// post-quantum rung when o allows only TLS 1.2 or its CurvePreferences
// exclude the hybrid group. A caller compares rungs with it to tell whether
// moving down the ladder reduces security.
func (r Rung) SendsPostQuantum(o Options) bool {
	p, err := r.plan(o)
	return err == nil && p.postQuantum
}

func (r Rung) plan(o Options) (plan, error) {
	if !r.valid {
		return plan{}, errZeroRung
	}
	return o.plan(r.PostQuantum, r.Compact)
}

func (r Rung) spec(o Options) (*utls.ClientHelloSpec, plan, error) {
	p, err := r.plan(o)
	if err != nil {
		return nil, plan{}, err
	}
	return p.spec(), p, nil
}

const (
	groupX25519MLKEM768 = uint16(utls.X25519MLKEM768)
	groupX25519         = uint16(utls.X25519)
	groupP256           = uint16(utls.CurveP256)
	groupP384           = uint16(utls.CurveP384)
	groupP521           = uint16(utls.CurveP521)
)

// classicalGroups are the classical groups a rung offers, in crypto/tls's
// preference order: all of those the Options allow are listed, and the
// first carries the key share (see plan).
var classicalGroups = []uint16{groupX25519, groupP256, groupP384, groupP521}

// keyShareLen is the size of the key_share entry data of each group.
var keyShareLen = map[uint16]int{
	groupX25519MLKEM768: 1184 + 32, // ML-KEM-768 encapsulation key + X25519
	groupX25519:         32,
	groupP256:           65, // uncompressed points
	groupP384:           97,
	groupP521:           133,
}

// suitesTLS13 are the TLS 1.3 suites, all of them, AES-GCM first as Go
// orders them on hardware with AES support.
var suitesTLS13 = []uint16{
	tls.TLS_AES_128_GCM_SHA256,
	tls.TLS_AES_256_GCM_SHA384,
	tls.TLS_CHACHA20_POLY1305_SHA256,
}

// suitesTLS12 are the TLS 1.2 suites: ECDHE and AEAD only (forward secrecy,
// no CBC, no RSA key exchange), in Go's order.
var suitesTLS12 = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ecdsaSuite reports whether a suite of suitesTLS12 authenticates the
// server with an ECDSA certificate (the others take RSA ones).
func ecdsaSuite(s uint16) bool {
	switch s {
	case tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256:
		return true
	}
	return false
}

// Signature algorithms: sigAlgs are Go 1.26's for a client whose minimum
// version is TLS 1.2 (SHA-1 disabled since Go 1.25); sigAlgsTLS13 leave out
// PKCS #1 v1.5, which TLS 1.3 forbids, for a client that offers TLS 1.3
// only. The compact lists keep one algorithm per key type a server's
// certificate may have (RSA: PSS, and PKCS #1 v1.5 for TLS 1.2; ECDSA on
// each curve; Ed25519), with SHA-256 where the key allows a choice.
var (
	sigAlgs = []utls.SignatureScheme{
		utls.PSSWithSHA256,
		utls.ECDSAWithP256AndSHA256,
		utls.Ed25519,
		utls.PSSWithSHA384,
		utls.PSSWithSHA512,
		utls.PKCS1WithSHA256,
		utls.PKCS1WithSHA384,
		utls.PKCS1WithSHA512,
		utls.ECDSAWithP384AndSHA384,
		utls.ECDSAWithP521AndSHA512,
	}
	sigAlgsTLS13 = []utls.SignatureScheme{
		utls.PSSWithSHA256,
		utls.ECDSAWithP256AndSHA256,
		utls.Ed25519,
		utls.PSSWithSHA384,
		utls.PSSWithSHA512,
		utls.ECDSAWithP384AndSHA384,
		utls.ECDSAWithP521AndSHA512,
	}
	sigAlgsCompact = []utls.SignatureScheme{
		utls.PSSWithSHA256,
		utls.ECDSAWithP256AndSHA256,
		utls.Ed25519,
		utls.PKCS1WithSHA256,
		utls.ECDSAWithP384AndSHA384,
		utls.ECDSAWithP521AndSHA512,
	}
	sigAlgsCompactTLS13 = []utls.SignatureScheme{
		utls.PSSWithSHA256,
		utls.ECDSAWithP256AndSHA256,
		utls.Ed25519,
		utls.ECDSAWithP384AndSHA384,
		utls.ECDSAWithP521AndSHA512,
	}
)

// numCipherSuites is len(p.cipherSuites()), without building it.
func (p *plan) numCipherSuites() int {
	n := 0
	if p.tls13() {
		n += len(suitesTLS13)
	}
	if p.tls12() {
		n += len(p.suites12)
	}
	return n
}

func (p *plan) cipherSuites() []uint16 {
	var s []uint16
	if p.tls13() {
		s = append(s, suitesTLS13...)
	}
	if p.tls12() {
		s = append(s, p.suites12...)
	}
	return s
}

func (p *plan) sigAlgs() []utls.SignatureScheme {
	return append([]utls.SignatureScheme(nil), p.sharedSigAlgs()...)
}

// sharedSigAlgs is the package's list sigAlgs returns a copy of: read it,
// never write it.
func (p *plan) sharedSigAlgs() []utls.SignatureScheme {
	switch {
	case p.compact && p.tls12():
		return sigAlgsCompact
	case p.compact:
		return sigAlgsCompactTLS13
	case p.tls12():
		return sigAlgs
	}
	return sigAlgsTLS13
}

func (p *plan) versions() []uint16 {
	var v []uint16
	for ver := p.maxVersion; ver >= p.minVersion; ver-- {
		v = append(v, ver)
	}
	return v
}

// spec builds a new ClientHello spec. Extensions follow crypto/tls's order;
// the padding extension comes last and keeps the handshake message out of
// 256–511 bytes (BoringSSL style), which some TLS terminators hang on.
func (p *plan) spec() *utls.ClientHelloSpec {
	curves := make([]utls.CurveID, len(p.groups))
	for i, g := range p.groups {
		curves[i] = utls.CurveID(g)
	}
	shares := make([]utls.KeyShare, len(p.shares))
	for i, g := range p.shares {
		shares[i] = utls.KeyShare{Group: utls.CurveID(g)}
	}
	return &utls.ClientHelloSpec{
		TLSVersMin:         p.minVersion,
		TLSVersMax:         p.maxVersion,
		CipherSuites:       p.cipherSuites(),
		CompressionMethods: []uint8{0}, // null
		Extensions:         p.extensions(curves, shares),
	}
}

// extensions returns the spec's extensions, in crypto/tls's order, the
// padding last.
func (p *plan) extensions(curves []utls.CurveID, shares []utls.KeyShare) []utls.TLSExtension {
	var ext []utls.TLSExtension
	if p.sni != "" {
		ext = append(ext, &utls.SNIExtension{ServerName: p.sni})
	}
	if p.tls12() {
		ext = append(ext,
			&utls.SupportedPointsExtension{SupportedPoints: []uint8{0}}, // uncompressed
			// Build sets Renegotiation from the Config: utls copies it back
			// into the Config, and anything but RenegotiateNever disables
			// ExportKeyingMaterial.
			&utls.RenegotiationInfoExtension{Renegotiation: utls.RenegotiateNever},
			&utls.ExtendedMasterSecretExtension{},
		)
	}
	if p.status {
		ext = append(ext, &utls.SCTExtension{}, &utls.StatusRequestExtension{})
	}
	ext = append(ext,
		&utls.SupportedCurvesExtension{Curves: curves},
		&utls.SignatureAlgorithmsExtension{SupportedSignatureAlgorithms: p.sigAlgs()},
	)
	if len(p.alpn) > 0 {
		ext = append(ext, &utls.ALPNExtension{AlpnProtocols: append([]string(nil), p.alpn...)})
	}
	if p.tls13() {
		// No psk_key_exchange_modes: without it a server issues no
		// session tickets, which no rung could use (crypto/tls sends it
		// only with a session cache).
		ext = append(ext,
			&utls.SupportedVersionsExtension{Versions: p.versions()},
			&utls.KeyShareExtension{KeyShares: shares},
		)
	}
	return append(ext, &utls.UtlsPaddingExtension{GetPaddingLen: utls.BoringPaddingStyle})
}

// handshakeSize returns the size of the ClientHello handshake message (with
// its 4-byte header) that spec marshals to, by arithmetic alone (and without
// allocating: Dialer plans every dial).
func (p *plan) handshakeSize() int {
	n := 4 + // handshake header
		2 + 32 + // legacy_version, random
		1 + // legacy_session_id length
		2 + 2*p.numCipherSuites() +
		1 + 1 + // compression methods: null
		2 // extensions length
	if p.sessionID {
		n += sessionIDLen
	}
	if p.sni != "" {
		n += 4 + 2 + 1 + 2 + len(p.sni)
	}
	if p.tls12() {
		n += 4 + 1 + 1 // ec_point_formats
		n += 4 + 1     // renegotiation_info, empty
		n += 4         // extended_master_secret
	}
	if p.status {
		n += 4             // signed_certificate_timestamp
		n += 4 + 1 + 2 + 2 // status_request (OCSP)
	}
	n += 4 + 2 + 2*len(p.groups)          // supported_groups
	n += 4 + 2 + 2*len(p.sharedSigAlgs()) // signature_algorithms
	if len(p.alpn) > 0 {
		n += 4 + 2
		for _, proto := range p.alpn {
			n += 1 + len(proto)
		}
	}
	if p.tls13() {
		n += 4 + 1 + 2*int(p.maxVersion-p.minVersion+1) // supported_versions (p.versions)
		n += 4 + 2                                      // key_share
		for _, g := range p.shares {
			n += 2 + 2 + keyShareLen[g]
		}
	}
	if pad, ok := utls.BoringPaddingStyle(n); ok {
		n += 4 + pad
	}
	return n
}

// recordSize is handshakeSize plus the 5-byte TLS record header.
func (p *plan) recordSize() int { return recordHeaderLen + p.handshakeSize() }

const (
	recordHeaderLen = 5
	// sessionIDLen is the legacy session ID of every rung but the compact
	// one: random, as crypto/tls sends it (RFC 8446 middlebox
	// compatibility mode).
	sessionIDLen = 32
	// maxHandshakeLen is the largest ClientHello that fits one TLS record
	// (2^14 bytes of plaintext).
	maxHandshakeLen = 1 << 14
)
