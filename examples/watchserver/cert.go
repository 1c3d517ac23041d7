package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"time"
)

// certificate loads -cert and -key, or makes a self-signed certificate
// and says so on stderr.
func certificate(c config, stderr io.Writer) (tls.Certificate, error) {
	if c.cert != "" {
		return tls.LoadX509KeyPair(c.cert, c.key)
	}
	names := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if host, _, err := net.SplitHostPort(c.listen); err == nil && host != "" {
		if ip := net.ParseIP(host); ip == nil {
			names = append(names, host)
		} else if !ip.IsUnspecified() && !ip.IsLoopback() {
			ips = append(ips, ip)
		}
	}
	cert, err := selfSigned(names, ips, time.Now())
	if err != nil {
		return cert, err
	}
	all := append([]string(nil), names...)
	for _, ip := range ips {
		all = append(all, ip.String())
	}
	fmt.Fprintf(stderr, "watchserver: no -cert: serving a self-signed certificate for %s, valid 30 days (clients must be told to trust it: curl -k)\n", strings.Join(all, ", "))
	return cert, nil
}

// selfSigned makes an ECDSA P-256 certificate for names and ips, signed
// by its own key.
func selfSigned(names []string, ips []net.IP, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "watchserver (self-signed)"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
