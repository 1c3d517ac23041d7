package fingerprint

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"
)

// crypto/tls's own hello for the post-quantum rung.
//
// The post-quantum rung offers what crypto/tls offers. crypto/tls can send
// it itself, and does so faster than utls: utls v1.8.2 builds the hello
// from a spec and, when the server picks X25519MLKEM768, computes the
// X25519 secret twice (keyshare.go). StdConfig gives the Config for that.
// The hello is crypto/tls's, byte for byte: a few extensions the spec
// leaves out (session_ticket, psk_key_exchange_modes,
// extended_master_secret, renegotiation_info, the hybrid groups Go adds)
// make it 30–50 bytes larger, and Go 1.27 adds the ML-DSA signature
// algorithms. StdHello returns it.

// StdConfig returns a clone of c with which crypto/tls sends the hello of
// r for o itself, keeping the ladder's rules: TLS 1.2 at least, TLS 1.2
// suites only from the rung's AEAD ECDHE suites (TLS 1.3 alone when none
// is left), and no session resumption (ClientSessionCache nil). Its
// ServerName is o.ServerName when c has none.
//
// ok is false, and r's hello needs Build, when crypto/tls would not send
// the same key shares: r is not the post-quantum rung or sends no
// post-quantum share for o, or c asks for Encrypted Client Hello. Where
// the process turned crypto/tls's post-quantum share off, its hello has
// none all the same: check it with HasPostQuantumShare before sending it.
func (r Rung) StdConfig(c *tls.Config, o Options) (cfg *tls.Config, ok bool) {
	if !r.valid || r.Compact || !r.PostQuantum {
		return nil, false
	}
	if c != nil && c.EncryptedClientHelloConfigList != nil {
		return nil, false
	}
	p, err := r.plan(o)
	if err != nil || !p.postQuantum {
		return nil, false
	}
	if c == nil {
		cfg = &tls.Config{}
	} else {
		cfg = c.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = o.ServerName
	}
	cfg.MinVersion, cfg.MaxVersion = p.minVersion, p.maxVersion
	cfg.CipherSuites = p.suites12
	cfg.ClientSessionCache = nil
	return cfg, true
}

// StdHello returns the TLS record carrying crypto/tls's ClientHello for c,
// built as a handshake would build it (fresh keys included) and never
// sent.
func StdHello(c *tls.Config) ([]byte, error) {
	var w helloCatcher
	err := tls.Client(&w, c).HandshakeContext(context.Background())
	if w.hello == nil {
		return nil, err
	}
	return w.hello, nil
}

var errCaught = errors.New("fingerprint: ClientHello caught")

// helloCatcher is a connection that takes the first write, the
// ClientHello, and fails it.
type helloCatcher struct{ hello []byte }

func (w *helloCatcher) Write(b []byte) (int, error) {
	if w.hello == nil {
		w.hello = append([]byte(nil), b...)
	}
	return 0, errCaught
}
func (w *helloCatcher) Read([]byte) (int, error)         { return 0, errCaught }
func (w *helloCatcher) Close() error                     { return nil }
func (w *helloCatcher) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (w *helloCatcher) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (w *helloCatcher) SetDeadline(time.Time) error      { return nil }
func (w *helloCatcher) SetReadDeadline(time.Time) error  { return nil }
func (w *helloCatcher) SetWriteDeadline(time.Time) error { return nil }

// HasPostQuantumShare reports whether hello, a TLS record holding a
// ClientHello, carries an X25519MLKEM768 key share. crypto/tls's does
// unless the process turned it off (GODEBUG tlsmlkem=0, in the environment
// or the main module's defaults; FIPS 140-3 mode): the caller of StdConfig
// checks the hello crypto/tls writes before it is sent.
//
// It reads only the fields before the key shares, with no allocation:
// utls.UnmarshalClientHello would parse the whole hello, 2.9 µs and 24
// allocations on every Dialer's dial.
func HasPostQuantumShare(hello []byte) bool {
	r := reader(hello)
	if len(hello) < 5 || hello[0] != 22 || !r.skip(5+4+2+32) || // record and handshake headers, version, random
		!r.skipVec(1) || !r.skipVec(2) || !r.skipVec(1) { // session ID, suites, compression
		return false
	}
	exts, ok := r.vec(2)
	for ok && len(exts) > 0 {
		var typ int
		var body reader
		if typ, ok = exts.uint16(); !ok {
			return false
		}
		if body, ok = exts.vec(2); !ok {
			return false
		}
		if typ != extKeyShare {
			continue
		}
		shares, ok := body.vec(2)
		for ok && len(shares) > 0 {
			var group int
			if group, ok = shares.uint16(); ok && group == int(tls.X25519MLKEM768) {
				return true
			}
			ok = ok && shares.skipVec(2)
		}
		return false
	}
	return false
}

const extKeyShare = 51

// reader reads a ClientHello's fields, big-endian, with bounds checked.
type reader []byte

func (r *reader) skip(n int) bool {
	if n > len(*r) {
		return false
	}
	*r = (*r)[n:]
	return true
}

func (r *reader) uint16() (int, bool) {
	if len(*r) < 2 {
		return 0, false
	}
	v := int((*r)[0])<<8 | int((*r)[1])
	*r = (*r)[2:]
	return v, true
}

// vec reads a vector whose length takes n bytes (1 or 2).
func (r *reader) vec(n int) (reader, bool) {
	if len(*r) < n {
		return nil, false
	}
	l := int((*r)[0])
	if n == 2 {
		l = l<<8 | int((*r)[1])
	}
	*r = (*r)[n:]
	if l > len(*r) {
		return nil, false
	}
	v := (*r)[:l]
	*r = (*r)[l:]
	return v, true
}

func (r *reader) skipVec(n int) bool {
	_, ok := r.vec(n)
	return ok
}
