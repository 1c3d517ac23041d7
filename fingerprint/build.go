package fingerprint

import (
	"errors"
	"fmt"

	utls "github.com/refraction-networking/utls"
)

// Hello is a ClientHello built and measured before any connection exists.
type Hello struct {
	// Conn is built with utls.UClient(nil, cfg, utls.HelloCustom) and has
	// its handshake state built. The caller dials, calls
	// Conn.SetUnderlyingConn, then Conn.HandshakeContext; the first Write
	// on the underlying conn is the ClientHello record, RecordSize bytes.
	Conn *utls.UConn
	// RecordSize is the exact size in bytes of the TLS record carrying the
	// ClientHello: len(Conn.HandshakeState.Hello.Raw) + 5.
	RecordSize int
	// Rung is the rung the hello was built from.
	Rung Rung
	// PostQuantum reports that this hello carries an X25519MLKEM768 key
	// share (false when only TLS 1.2 is offered or CurvePreferences
	// excludes it, even on a post-quantum rung).
	PostQuantum bool

	shares *keyShares // the post-quantum key shares, for Again; nil if none
}

// keyShares are the key shares Build generated: their wire data by group
// and their private keys.
type keyShares struct {
	data map[utls.CurveID][]byte
	keys *utls.KeySharePrivateKeys
}

var errECH = errors.New("fingerprint: Encrypted Client Hello is not supported (it changes the ClientHello size)")

// Build applies a fresh spec of r for o to a new UConn over cfg and builds
// its handshake state, so that RecordSize is exact before anything is sent.
//
// cfg is used as is and written to: utls stores the spec's ALPN, groups,
// versions and renegotiation setting in it, and Build sets cfg.ServerName to
// o.ServerName when that is not empty (it is the name sent and verified).
// Pass a fresh clone per connection and never share it. A nil cfg is a
// new zero Config.
//
// On a post-quantum hello, the X25519MLKEM768 and X25519 key shares use one
// X25519 key, as crypto/tls's do; all keys are generated on every call,
// from cfg.Rand as utls would, and never reused.
//
// The hello never resumes a session: it has no session_ticket or
// pre_shared_key extension. utls may still store TLS 1.3 tickets into
// cfg.ClientSessionCache and look them up, but never sends them, and a
// cache shared by successive connections is safe. Configs with
// EncryptedClientHelloConfigList are refused.
func Build(r Rung, cfg *utls.Config, o Options) (*Hello, error) {
	return build(r, cfg, o, nil)
}

// Again builds h's rung again for another connection of the same dial
// (one server, one Options), with h's post-quantum key shares instead of
// new ones, as a ClientHello replayed on a new connection carries them:
// the ML-KEM and X25519 keys are most of what a hello costs to build. The
// random and everything else are fresh; cfg is used as Build uses it. The
// keys are only read by the handshakes that use them, and may serve
// several at once. Without post-quantum shares (a classical rung), Again
// is Build.
func (h *Hello) Again(cfg *utls.Config, o Options) (*Hello, error) {
	return build(h.Rung, cfg, o, h.shares)
}

func build(r Rung, cfg *utls.Config, o Options, reuse *keyShares) (*Hello, error) {
	if cfg == nil {
		cfg = &utls.Config{}
	}
	if cfg.EncryptedClientHelloConfigList != nil {
		return nil, errECH
	}
	spec, p, err := r.spec(o)
	if err != nil {
		return nil, err
	}
	if n := p.handshakeSize(); n > maxHandshakeLen {
		// Checked before generating keys; a long ALPN list or name can do it.
		return nil, fmt.Errorf("fingerprint: %s hello of %d bytes does not fit one TLS record (max %d)", r.Name, n, maxHandshakeLen)
	}
	for _, e := range spec.Extensions {
		if ri, ok := e.(*utls.RenegotiationInfoExtension); ok {
			ri.Renegotiation = cfg.Renegotiation
		}
	}
	if o.ServerName != "" {
		cfg.ServerName = o.ServerName
	}

	uc, shares, err := newUConn(r, cfg, spec, p, reuse)
	if err != nil {
		return nil, err
	}
	// Raw is what goes on the wire; the tests hold it equal to
	// p.handshakeSize (RecordSize), which predicted it without keys.
	n := len(uc.HandshakeState.Hello.Raw)
	return &Hello{Conn: uc, RecordSize: n + recordHeaderLen, Rung: r, PostQuantum: p.postQuantum, shares: shares}, nil
}

// newUConn applies spec to a new UConn over cfg, with the keys (reuse's,
// or new ones) and the legacy session ID p asks for, and builds its
// handshake state. It returns the post-quantum key shares it used.
func newUConn(r Rung, cfg *utls.Config, spec *utls.ClientHelloSpec, p plan, reuse *keyShares) (*utls.UConn, *keyShares, error) {
	// One X25519 key for the hybrid and the X25519 shares, as crypto/tls
	// does (see keyshare.go); utls would generate one for each.
	var shares *keyShares
	if ks := keyShareExtension(spec); ks != nil {
		var err error
		if shares, err = sharesFor(ks, configRand(cfg), reuse); err != nil {
			return nil, nil, fmt.Errorf("fingerprint: generating %s key shares: %w", r.Name, err)
		}
	}
	uc := utls.UClient(nil, cfg, utls.HelloCustom)
	if err := uc.ApplyPreset(spec); err != nil {
		return nil, nil, fmt.Errorf("fingerprint: applying %s spec: %w", r.Name, err)
	}
	if !p.sessionID {
		// ApplyPreset drew a random one, as crypto/tls does.
		uc.HandshakeState.Hello.SessionId = nil
	}
	if shares != nil {
		// ApplyPreset generated no key for shares that have data, and left
		// KeyShareKeys empty.
		uc.HandshakeState.State13.KeyShareKeys = shares.keys
	}
	if err := uc.BuildHandshakeState(); err != nil {
		return nil, nil, fmt.Errorf("fingerprint: building %s hello: %w", r.Name, err)
	}
	return uc, shares, nil
}
