package fingerprint

import (
	"context"
	"crypto/fips140"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
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
// post-quantum share for o, c asks for Encrypted Client Hello, or
// crypto/tls in this process sends no X25519MLKEM768 share (GODEBUG
// tlsmlkem=0, in the environment or the main module's defaults; FIPS 140-3
// mode).
func (r Rung) StdConfig(c *tls.Config, o Options) (cfg *tls.Config, ok bool) {
	if !r.valid || r.Compact || !r.PostQuantum || !stdSendsPostQuantum() {
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

// stdSendsPostQuantum reports whether crypto/tls in this process offers
// X25519MLKEM768 by default: not under GODEBUG tlsmlkem=0 (the
// environment overrides the main module's defaults, as at run time) nor in
// FIPS 140-3 mode. Measuring a hello would tell for sure, but costs a key
// generation on a process's first dial.
func stdSendsPostQuantum() bool {
	if fips140.Enabled() {
		return false
	}
	v, set := godebug(os.Getenv("GODEBUG"), "tlsmlkem")
	if !set {
		v, _ = godebug(defaultGODEBUG(), "tlsmlkem")
	}
	return v != "0"
}

// defaultGODEBUG is the main module's GODEBUG defaults (go.mod godebug
// lines, //go:debug directives, its go version), as the linker recorded
// them.
var defaultGODEBUG = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == "DefaultGODEBUG" {
			return s.Value
		}
	}
	return ""
})

// godebug returns the last value of key in the comma-separated list s, as
// the runtime reads GODEBUG.
func godebug(s, key string) (value string, set bool) {
	for kv := range strings.SplitSeq(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			value, set = v, true
		}
	}
	return value, set
}
