package fingerprint

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/testcert"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/require"
)

// testPKI is a CA with an ECDSA P-256 and an RSA-2048 leaf for
// server.test, and a second, unrelated CA.
type testPKI struct {
	roots      *x509.CertPool // holds the CA
	otherRoots *x509.CertPool // holds an unrelated CA
	ecdsaLeaf  tls.Certificate
	rsaLeaf    tls.Certificate
}

const testServerName = "server.test"

var pki = sync.OnceValue(func() *testPKI {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	newCA := func(name string) (*x509.Certificate, crypto.Signer) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: name},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		must(err)
		cert, err := x509.ParseCertificate(der)
		must(err)
		return cert, key
	}
	ca, caKey := newCA("fingerprint test CA")
	other, _ := newCA("unrelated CA")
	leaf := func(key crypto.Signer, serial int64) tls.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: testServerName},
			DNSNames:     []string{testServerName},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		must(err)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	p := &testPKI{roots: x509.NewCertPool(), otherRoots: x509.NewCertPool()}
	p.roots.AddCert(ca)
	p.otherRoots.AddCert(other)
	p.ecdsaLeaf = leaf(ecKey, 2)
	p.rsaLeaf = leaf(rsaKey, 3)
	return p
})

// writeRecorder records the size and bytes of every Write.
type writeRecorder struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (w *writeRecorder) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.writes = append(w.writes, bytes.Clone(b))
	w.mu.Unlock()
	return w.Conn.Write(b)
}

func (w *writeRecorder) first() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.writes) == 0 {
		return nil
	}
	return w.writes[0]
}

// result is the outcome of one handshake between a built Hello and a
// crypto/tls server.
type result struct {
	clientErr, serverErr error
	firstWrite           []byte // the first Write the client made
	client               utls.ConnectionState
	server               tls.ConnectionState
}

// handshake runs h against a crypto/tls server using srv over loopback TCP.
func handshake(t testing.TB, h *Hello, srv *tls.Config) result {
	t.Helper()
	c, s := testcert.TCPPair(t)
	rec := &writeRecorder{Conn: c}
	server := tls.Server(s, srv)
	srvDone := make(chan error, 1)
	go func() {
		err := server.HandshakeContext(context.Background())
		if err == nil {
			// Read the client's Finished-triggered tickets etc. are not
			// needed; a round trip proves the keys match.
			buf := make([]byte, 4)
			if _, err = io.ReadFull(server, buf); err == nil {
				_, err = server.Write(buf)
			}
		}
		srvDone <- err
	}()
	h.Conn.SetUnderlyingConn(rec)
	var r result
	r.clientErr = h.Conn.HandshakeContext(context.Background())
	if r.clientErr == nil {
		if _, err := h.Conn.Write([]byte("ping")); err != nil {
			r.clientErr = err
		} else {
			buf := make([]byte, 4)
			if _, err := io.ReadFull(h.Conn, buf); err != nil {
				r.clientErr = err
			} else if string(buf) != "ping" {
				r.clientErr = errors.New("echo mismatch")
			}
		}
		r.client = h.Conn.ConnectionState()
	} else {
		c.Close()
	}
	r.serverErr = <-srvDone
	r.server = server.ConnectionState()
	r.firstWrite = rec.first()
	return r
}

// parseHello parses a ClientHello TLS record twice: with utls's parser, and
// with crypto/tls's server, which reports what it understood in a
// ClientHelloInfo.
func parseHello(t testing.TB, record []byte) (*utls.PubClientHelloMsg, *tls.ClientHelloInfo) {
	t.Helper()
	require.GreaterOrEqual(t, len(record), 5)
	require.Equal(t, byte(22), record[0], "handshake record")
	require.Equal(t, len(record)-5, int(record[3])<<8|int(record[4]), "record length")
	msg := utls.UnmarshalClientHello(record[5:])
	require.NotNil(t, msg, "utls cannot parse the ClientHello")

	var info *tls.ClientHelloInfo
	errStop := errors.New("stop")
	srv := tls.Server(&replayConn{r: bytes.NewReader(record)}, &tls.Config{
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			info = chi
			return nil, errStop
		},
	})
	err := srv.Handshake()
	require.ErrorIs(t, err, errStop, "crypto/tls cannot parse the ClientHello")
	return msg, info
}

// replayConn reads from r and discards writes.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *replayConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *replayConn) Close() error                     { return nil }
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }
func (c *replayConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *replayConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }

// record returns the TLS record carrying h's ClientHello.
func record(h *Hello) []byte {
	raw := h.Conn.HandshakeState.Hello.Raw
	return append([]byte{22, 3, 1, byte(len(raw) >> 8), byte(len(raw))}, raw...)
}

// clientConfig is a verifying utls client config for server.test.
func clientConfig(roots *x509.CertPool) *utls.Config {
	return &utls.Config{RootCAs: roots, ServerName: testServerName}
}
