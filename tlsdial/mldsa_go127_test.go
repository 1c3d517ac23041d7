//go:build go1.27

package tlsdial_test

import (
	"context"
	"crypto/mldsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/fitshake/fitshake/fingerprint"
	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Go 1.27 server whose only certificate is ML-DSA: crypto/tls reaches
// it, over TCPDialer too, and so does the Dialer, whose full hello is
// crypto/tls's. A hello built by utls offers no ML-DSA signature
// algorithm, so the server refuses it (README, "Go 1.27"): this pins the
// documented limitation; when utls learns ML-DSA, this test fails and the
// README must change.
func TestMLDSAOnlyServerGo127(t *testing.T) {
	leaktest.Check(t)
	key, err := mldsa.GenerateKey(mldsa.MLDSA44())
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: serverName}, DNSNames: []string{serverName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	addr := ln.Addr().String()
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName}
	ctx := context.Background()

	c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	require.NoError(t, err, "crypto/tls")
	c.Close()

	raw, err := (&tlsdial.TCPDialer{}).DialContext(ctx, "tcp", addr)
	require.NoError(t, err)
	tc := tls.Client(raw, cfg)
	assert.NoError(t, tc.HandshakeContext(ctx), "crypto/tls over TCPDialer")
	tc.Close()

	d := &tlsdial.Dialer{Config: cfg}
	c, err = d.DialContext(ctx, "tcp", addr)
	require.NoError(t, err, "the Dialer's first hello is crypto/tls's")
	assert.Equal(t, fingerprint.NamePostQuantum, c.(*tlsdial.Conn).Report().Rung)
	c.Close()

	// Where utls sends the full hello (crypto/tls here sends no
	// post-quantum share), the server refuses it.
	t.Setenv("GODEBUG", "tlsmlkem=0")
	_, err = d.DialContext(ctx, "tcp", addr)
	// utls's alert, not crypto/tls's AlertError: only its text says it.
	assert.ErrorContains(t, err, "remote error: tls: handshake failure", "utls offers ML-DSA now? update the README")
}
