package fingerprint

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"io"

	utls "github.com/refraction-networking/utls"
)

// Key shares, generated here rather than by utls.
//
// crypto/tls generates one X25519 key per connection and uses it for both
// the X25519 half of the X25519MLKEM768 share and the separate X25519 share
// (allowed by draft-ietf-tls-hybrid-design, Section 3.2: both are the same
// ephemeral key, whichever the server picks). utls v1.8.2's ApplyPreset
// instead generates a second X25519 key for the hybrid share, like Chrome:
// one more scalar multiplication per connection (about 40 µs, 3% of a
// loopback handshake). fitshake's hellos follow crypto/tls, so Build fills
// the key shares itself, through utls's public API: the share data in the
// spec (ApplyPreset generates keys only for shares without data) and the
// private keys in UConn.HandshakeState.State13.KeyShareKeys.
//
// The keys are fresh for every spec, drawn from the Config's Rand as utls
// and crypto/tls draw them, and the wire bytes are unchanged in size and
// form: the hybrid share is the ML-KEM-768 encapsulation key followed by
// the X25519 public key (draft-ietf-tls-ecdhe-mlkem, Section 4.1), and the
// X25519 share is that same public key.
//
// What remains: when the server picks X25519MLKEM768, utls v1.8.2
// (establishHandshakeKeys) computes the X25519 secret twice, with Ecdhe and
// then with MlkemEcdhe, and keeps the second. With one key both give the
// same secret; the public API offers no way to skip either, so a hybrid
// handshake still costs one X25519 more than crypto/tls's (about 45 µs,
// 4% of a loopback handshake). The first needs a non-nil X25519 Ecdhe (the
// handshake checks it, and an X25519-only server uses it); the second runs
// whenever the UConn's clientHelloBuildStatus is BuildByUtls, which
// HandshakeContext sets itself by building the hello again, and is skipped
// only without a UConn behind the handshake state, where utls would also
// answer a HelloRetryRequest by resending the first hello.

// shareX25519 generates the keys of the X25519MLKEM768 and X25519 shares
// of ks, one X25519 key for both, writes their public data into ks and
// returns the private keys for UConn.HandshakeState.State13.KeyShareKeys.
// It returns nil and changes nothing when ks does not hold both shares.
//
// The X25519 key serves as KeySharePrivateKeys.Ecdhe (the X25519 share) and
// KeySharePrivateKeys.MlkemEcdhe (the hybrid's X25519 half): utls derives a
// server's X25519 or X25519MLKEM768 answer from them, so both answers work.
func shareX25519(ks *utls.KeyShareExtension, r io.Reader) (*utls.KeySharePrivateKeys, error) {
	hybrid, classical := -1, -1
	for i, s := range ks.KeyShares {
		switch s.Group {
		case utls.X25519MLKEM768:
			hybrid = i
		case utls.X25519:
			classical = i
		}
	}
	if hybrid < 0 || classical < 0 {
		return nil, nil
	}
	// The order of crypto/tls's hybridKeyExchange.keyShares: the X25519 key,
	// then the ML-KEM seed.
	x, err := ecdh.X25519().GenerateKey(r)
	if err != nil {
		return nil, err
	}
	seed := make([]byte, mlkem.SeedSize)
	if _, err := io.ReadFull(r, seed); err != nil {
		return nil, err
	}
	m, err := mlkem.NewDecapsulationKey768(seed)
	if err != nil {
		return nil, err
	}
	pub := x.PublicKey().Bytes()
	ks.KeyShares[hybrid].Data = append(m.EncapsulationKey().Bytes(), pub...)
	ks.KeyShares[classical].Data = pub
	return &utls.KeySharePrivateKeys{Ecdhe: x, Mlkem: m, MlkemEcdhe: x}, nil
}

// sharesFor fills the X25519MLKEM768 and X25519 shares of ks with reuse's
// data when it has data for both, or with new keys (shareX25519), and
// returns what it used; nil when ks does not hold both shares.
func sharesFor(ks *utls.KeyShareExtension, r io.Reader, reuse *keyShares) (*keyShares, error) {
	if reuse != nil && reuse.fits(ks) {
		for i := range ks.KeyShares {
			ks.KeyShares[i].Data = reuse.data[ks.KeyShares[i].Group]
		}
		return reuse, nil
	}
	keys, err := shareX25519(ks, r)
	if keys == nil || err != nil {
		return nil, err
	}
	data := make(map[utls.CurveID][]byte, len(ks.KeyShares))
	for _, s := range ks.KeyShares {
		data[s.Group] = s.Data
	}
	return &keyShares{data: data, keys: keys}, nil
}

// fits reports whether k has data for every share of ks.
func (k *keyShares) fits(ks *utls.KeyShareExtension) bool {
	for _, s := range ks.KeyShares {
		if k.data[s.Group] == nil {
			return false
		}
	}
	return true
}

// keyShareExtension returns the key_share extension of spec, or nil.
func keyShareExtension(spec *utls.ClientHelloSpec) *utls.KeyShareExtension {
	for _, e := range spec.Extensions {
		if ks, ok := e.(*utls.KeyShareExtension); ok {
			return ks
		}
	}
	return nil
}

// configRand is the Config's source of randomness, as utls reads it.
func configRand(cfg *utls.Config) io.Reader {
	if cfg.Rand != nil {
		return cfg.Rand
	}
	return rand.Reader
}
