package lab

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ServerName is the name in every lab certificate (with "*." + ServerName,
// so that a test can use a fresh name under it, and the server's IPv4 and
// IPv6 addresses).
const ServerName = "lab.fitshake.test"

// CertSet is the lab's PKI in PEM: an ECDSA P-256 root (never sent by a
// server), three small leaves signed by it (ECDSA P-256, ECDSA P-384,
// RSA-2048), and a long chain: an RSA-4096 leaf signed by RSA-4096
// intermediate 2, signed by RSA-4096 intermediate 1, signed by the root
// (leaf + both intermediates are sent, over 4 KB).
type CertSet struct {
	CA        []byte
	SmallCert []byte // the ECDSA P-256 leaf
	SmallKey  []byte
	P384Cert  []byte // the ECDSA P-384 leaf
	P384Key   []byte
	RSACert   []byte // the RSA-2048 leaf
	RSAKey    []byte
	LongChain []byte // leaf, intermediate 2, intermediate 1
	LongKey   []byte
	LongInter []byte // intermediate 2, intermediate 1 (for openssl s_server -cert_chain)
}

var certs = sync.OnceValues(generate)

// Certificates returns the lab's PKI, generating it on first use (once per
// test binary run: RSA-4096 keys take seconds under -race; the RSA keys are
// made in parallel).
func Certificates() (*CertSet, error) { return certs() }

// labKeys are the private keys of the lab's PKI.
type labKeys struct {
	root, small, p384       *ecdsa.PrivateKey
	int1, int2, long, rsaLf *rsa.PrivateKey
}

// generateKeys makes the lab's keys, the RSA ones in parallel.
func generateKeys() (*labKeys, error) {
	bits := []int{4096, 4096, 4096, 2048}
	rsaKeys := make([]*rsa.PrivateKey, len(bits))
	n := len(bits)
	errs := make([]error, n+3)
	var wg sync.WaitGroup
	for i, b := range bits {
		wg.Go(func() { rsaKeys[i], errs[i] = rsa.GenerateKey(rand.Reader, b) })
	}
	k := &labKeys{}
	k.root, errs[n] = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k.small, errs[n+1] = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k.p384, errs[n+2] = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	k.int1, k.int2, k.long, k.rsaLf = rsaKeys[0], rsaKeys[1], rsaKeys[2], rsaKeys[3]
	return k, nil
}

func generate() (*CertSet, error) {
	k, err := generateKeys()
	if err != nil {
		return nil, err
	}
	rootKey, smallKey, int1Key, int2Key, longKey := k.root, k.small, k.int1, k.int2, k.long

	now := time.Now()
	serial := int64(1)
	tmpl := func(cn string, ca bool) *x509.Certificate {
		serial++
		c := &x509.Certificate{
			SerialNumber:          big.NewInt(serial),
			Subject:               pkix.Name{CommonName: cn, Organization: []string{"fitshake lab"}},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(7 * 24 * time.Hour),
			BasicConstraintsValid: true,
			IsCA:                  ca,
		}
		if ca {
			c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		} else {
			c.KeyUsage = x509.KeyUsageDigitalSignature
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			c.DNSNames = []string{ServerName, "*." + ServerName}
			c.IPAddresses = []net.IP{serverIPv4.AsSlice(), serverIPv6.AsSlice()}
		}
		return c
	}
	type issued struct {
		cert *x509.Certificate
		der  []byte
	}
	issue := func(t *x509.Certificate, parent *issued, pub crypto.PublicKey, signer crypto.Signer) (*issued, error) {
		p := t
		if parent != nil {
			p = parent.cert
		}
		der, err := x509.CreateCertificate(rand.Reader, t, p, pub, signer)
		if err != nil {
			return nil, fmt.Errorf("lab: certificate %q: %w", t.Subject.CommonName, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		return &issued{c, der}, nil
	}
	root, err := issue(tmpl("fitshake lab root CA", true), nil, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	small, err := issue(tmpl(ServerName, false), root, smallKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	p384, err := issue(tmpl(ServerName, false), root, k.p384.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	rt := tmpl(ServerName, false)
	rt.KeyUsage |= x509.KeyUsageKeyEncipherment
	rsaLeaf, err := issue(rt, root, k.rsaLf.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	i1t := tmpl("fitshake lab intermediate 1", true)
	i1t.MaxPathLen = 1
	int1, err := issue(i1t, root, int1Key.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	i2t := tmpl("fitshake lab intermediate 2", true)
	i2t.MaxPathLen, i2t.MaxPathLenZero = 0, true
	int2, err := issue(i2t, int1, int2Key.Public(), int1Key)
	if err != nil {
		return nil, err
	}
	lt := tmpl(ServerName, false)
	lt.KeyUsage |= x509.KeyUsageKeyEncipherment
	long, err := issue(lt, int2, longKey.Public(), int2Key)
	if err != nil {
		return nil, err
	}

	certPEM := func(ds ...[]byte) []byte {
		var out []byte
		for _, d := range ds {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
		}
		return out
	}
	keyPEM := func(k crypto.Signer) ([]byte, error) {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
	cs := &CertSet{
		CA:        certPEM(root.der),
		SmallCert: certPEM(small.der),
		P384Cert:  certPEM(p384.der),
		RSACert:   certPEM(rsaLeaf.der),
		LongChain: certPEM(long.der, int2.der, int1.der),
		LongInter: certPEM(int2.der, int1.der),
	}
	if cs.SmallKey, err = keyPEM(smallKey); err != nil {
		return nil, err
	}
	if cs.LongKey, err = keyPEM(longKey); err != nil {
		return nil, err
	}
	if cs.P384Key, err = keyPEM(k.p384); err != nil {
		return nil, err
	}
	if cs.RSAKey, err = keyPEM(k.rsaLf); err != nil {
		return nil, err
	}
	return cs, nil
}

// PKI is the lab's certificates written to files in the lab's directory.
type PKI struct {
	CAFile        string // the root, for clients (curl --cacert, RootCAs)
	SmallCertFile string // small ECDSA P-256 leaf
	SmallKeyFile  string
	P384CertFile  string // ECDSA P-384 leaf
	P384KeyFile   string
	RSACertFile   string // RSA-2048 leaf
	RSAKeyFile    string
	LongChainFile string // RSA-4096 leaf + 2 intermediates
	LongKeyFile   string
	LongLeafFile  string // the RSA-4096 leaf alone
	LongInterFile string // the two intermediates
}

// Chain selects a server certificate.
type Chain string

// The server certificates.
const (
	Small Chain = "small" // ECDSA P-256 leaf, ~0.5 KB
	P384  Chain = "p384"  // ECDSA P-384 leaf, ~0.6 KB
	RSA   Chain = "rsa"   // RSA-2048 leaf, ~0.8 KB
	Long  Chain = "long"  // RSA-4096 leaf + 2 RSA-4096 intermediates, ~4.5 KB
)

// Files returns the certificate and key files of chain c.
func (p *PKI) Files(c Chain) (cert, key string) {
	switch c {
	case Long:
		return p.LongChainFile, p.LongKeyFile
	case P384:
		return p.P384CertFile, p.P384KeyFile
	case RSA:
		return p.RSACertFile, p.RSAKeyFile
	}
	return p.SmallCertFile, p.SmallKeyFile
}

// PKI writes the lab's certificates to its directory (once) and returns
// their paths.
func (l *Lab) PKI() (*PKI, error) {
	l.pkiOnce.Do(func() {
		cs, err := Certificates()
		if err != nil {
			l.pkiErr = err
			return
		}
		dir := filepath.Join(l.dir, "certs")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			l.pkiErr = err
			return
		}
		p := &PKI{
			CAFile:        filepath.Join(dir, "ca.pem"),
			SmallCertFile: filepath.Join(dir, "small.pem"),
			SmallKeyFile:  filepath.Join(dir, "small.key"),
			P384CertFile:  filepath.Join(dir, "p384.pem"),
			P384KeyFile:   filepath.Join(dir, "p384.key"),
			RSACertFile:   filepath.Join(dir, "rsa.pem"),
			RSAKeyFile:    filepath.Join(dir, "rsa.key"),
			LongChainFile: filepath.Join(dir, "long-chain.pem"),
			LongKeyFile:   filepath.Join(dir, "long.key"),
			LongLeafFile:  filepath.Join(dir, "long-leaf.pem"),
			LongInterFile: filepath.Join(dir, "long-intermediates.pem"),
		}
		for path, data := range map[string][]byte{
			p.CAFile: cs.CA, p.SmallCertFile: cs.SmallCert, p.SmallKeyFile: cs.SmallKey,
			p.P384CertFile: cs.P384Cert, p.P384KeyFile: cs.P384Key,
			p.RSACertFile: cs.RSACert, p.RSAKeyFile: cs.RSAKey,
			p.LongChainFile: cs.LongChain, p.LongKeyFile: cs.LongKey,
			p.LongLeafFile: cs.LongChain[:len(cs.LongChain)-len(cs.LongInter)], p.LongInterFile: cs.LongInter,
		} {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				l.pkiErr = err
				return
			}
		}
		l.pki = p
	})
	return l.pki, l.pkiErr
}
