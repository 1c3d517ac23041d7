package fingerprint

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// Options are the per-connection inputs of a spec, derived from the caller's
// config. The zero Options is valid: no SNI, no ALPN, TLS 1.2 and 1.3.
type Options struct {
	// ServerName is the name sent in SNI and verified against the server's
	// certificate (Build writes it into the utls.Config). "" or an IP
	// address sends no SNI extension.
	ServerName string

	// NextProtos are the ALPN protocols, in preference order. Empty sends no
	// ALPN extension. Each must be 1 to 255 bytes long.
	NextProtos []string

	// MinVersion and MaxVersion bound the TLS versions offered. 0 means
	// TLS 1.2 and TLS 1.3. Every rung uses only AEAD cipher suites, which
	// need TLS 1.2, so a MinVersion below TLS 1.2 is raised to TLS 1.2 and a
	// MaxVersion below TLS 1.2 is an error; no rung ever offers a version
	// below MinVersion.
	MinVersion, MaxVersion uint16

	// CipherSuites, if not nil, restricts the TLS 1.2 cipher suites offered
	// to those listed (as tls.Config.CipherSuites does; order is ignored).
	// It never adds a suite: a rung only offers its own AEAD ECDHE suites.
	// TLS 1.3 suites are not configurable. When no TLS 1.2 suite is left,
	// only TLS 1.3 is offered.
	CipherSuites []uint16

	// CurvePreferences, if not nil, restricts the key exchange groups
	// offered to those listed (as tls.Config.CurvePreferences does; order is
	// ignored). It never adds a group. At least one classical group
	// (X25519, P-256, P-384, P-521) must remain. Every group left is listed
	// in supported_groups; the first classical one in that order carries
	// the key share, with X25519MLKEM768 beside it when X25519 is first
	// (the hybrid share needs the X25519 share beside it; without X25519
	// every rung is classical). A server that picks another listed group
	// asks for its share with a HelloRetryRequest, as it would of
	// crypto/tls.
	CurvePreferences []tls.CurveID

	// CertificateStatus makes every rung ask for an OCSP staple and signed
	// certificate timestamps (status_request and
	// signed_certificate_timestamp), which crypto/tls always does. When
	// false the compact rung leaves them out; nothing in crypto/tls's own
	// verification reads them. OptionsFrom sets it when the Config
	// verifies certificates itself (VerifyPeerCertificate or
	// VerifyConnection), which may.
	CertificateStatus bool
}

// OptionsFrom derives Options from a crypto/tls client config, the way
// crypto/tls would build its own ClientHello from it. serverName is the host
// the caller dialled (without port); it is used when c.ServerName is empty.
// A nil c gives the defaults. The result shares no slice with c.
func OptionsFrom(c *tls.Config, serverName string) Options {
	if c == nil {
		return Options{ServerName: serverName}
	}
	o := Options{
		ServerName:       c.ServerName,
		NextProtos:       slices.Clone(c.NextProtos),
		MinVersion:       c.MinVersion,
		MaxVersion:       c.MaxVersion,
		CipherSuites:     slices.Clone(c.CipherSuites),
		CurvePreferences: slices.Clone(c.CurvePreferences),
		// Callbacks may read ConnectionState's OCSPResponse and
		// SignedCertificateTimestamps.
		CertificateStatus: c.VerifyPeerCertificate != nil || c.VerifyConnection != nil,
	}
	if o.ServerName == "" {
		o.ServerName = serverName
	}
	return o
}

// Validate reports whether o can be turned into a ClientHello by every rung.
func (o Options) Validate() error {
	_, err := o.plan(true, false)
	return err
}

// plan is Options resolved against one rung: exactly what the ClientHello
// will contain.
type plan struct {
	minVersion, maxVersion uint16
	sni                    string // "" → no SNI extension
	alpn                   []string
	suites12               []uint16 // TLS 1.2 suites, used when minVersion is TLS 1.2
	groups                 []uint16 // supported_groups
	shares                 []uint16 // the groups that carry a key share in TLS 1.3
	postQuantum            bool     // shares holds X25519MLKEM768
	compact                bool     // the compact rung's signature algorithms
	sessionID              bool     // a 32-byte legacy_session_id
	status                 bool     // OCSP and SCT requests
}

func (p *plan) tls12() bool { return p.minVersion <= tls.VersionTLS12 }
func (p *plan) tls13() bool { return p.maxVersion >= tls.VersionTLS13 }

var (
	errMaxVersion = errors.New("fingerprint: MaxVersion is below TLS 1.2, which every rung requires")
	errVersions   = errors.New("fingerprint: MinVersion is above MaxVersion")
	errNoGroup    = errors.New("fingerprint: CurvePreferences leaves no classical group (X25519, P-256, P-384 or P-521)")
	errNoSuite    = errors.New("fingerprint: CipherSuites leaves no TLS 1.2 suite and TLS 1.3 is not allowed")
	errALPN       = errors.New("fingerprint: invalid NextProtos value")
)

// plan resolves o for a rung, with or without the post-quantum group, full
// or compact.
func (o Options) plan(postQuantum, compact bool) (plan, error) {
	p := plan{minVersion: o.MinVersion, maxVersion: o.MaxVersion, compact: compact}
	if p.minVersion < tls.VersionTLS12 {
		p.minVersion = tls.VersionTLS12
	}
	if p.maxVersion == 0 || p.maxVersion > tls.VersionTLS13 {
		p.maxVersion = tls.VersionTLS13
	}
	if p.maxVersion < tls.VersionTLS12 {
		return plan{}, fmt.Errorf("%w (MaxVersion %#04x)", errMaxVersion, o.MaxVersion)
	}
	if p.minVersion > p.maxVersion {
		return plan{}, fmt.Errorf("%w (%#04x > %#04x)", errVersions, o.MinVersion, p.maxVersion)
	}
	p.suites12 = filter(suitesTLS12, o.CipherSuites)
	if len(p.suites12) == 0 {
		if !p.tls13() {
			return plan{}, errNoSuite
		}
		p.minVersion = tls.VersionTLS13
	}
	if err := p.planGroups(o.CurvePreferences, postQuantum); err != nil {
		return plan{}, err
	}
	if err := checkALPN(o.NextProtos); err != nil {
		return plan{}, err
	}
	p.alpn = slices.Clone(o.NextProtos)
	p.sni = hostnameInSNI(o.ServerName)
	p.sessionID, p.status = !compact, !compact || o.CertificateStatus
	if compact {
		p.suites12 = onePerCertificate(p.suites12)
	}
	return p, nil
}

// planGroups sets p's groups and key shares from the allowed curves (nil:
// all). utls v1.8.2 keeps the private key of only the first classical key
// share: a server picking a second one fails the handshake. So one
// classical group carries a share, the first; the others are listed for
// TLS 1.2 servers (OpenSSL picks an ECDSA certificate only on a curve the
// client lists) and for TLS 1.3 servers that want one of them, which ask
// for its share with a HelloRetryRequest (utls answers a classical one).
// utls also runs X25519 with that first classical key when the server
// picks X25519MLKEM768, and Build shares one X25519 key between the two
// shares (keyshare.go), so the hybrid group goes only with X25519. It is
// never listed without its share: utls v1.8.2 cannot answer a
// HelloRetryRequest for it.
func (p *plan) planGroups(curves []tls.CurveID, postQuantum bool) error {
	var prefs []uint16
	if curves != nil {
		prefs = make([]uint16, len(curves))
		for i, c := range curves {
			prefs[i] = uint16(c)
		}
	}
	classical := filter(classicalGroups, prefs)
	if len(classical) == 0 {
		return errNoGroup
	}
	p.groups, p.shares = classical, classical[:1]
	if postQuantum && p.tls13() && classical[0] == groupX25519 && len(filter([]uint16{groupX25519MLKEM768}, prefs)) == 1 {
		p.groups = append([]uint16{groupX25519MLKEM768}, classical...)
		p.shares = []uint16{groupX25519MLKEM768, groupX25519}
		p.postQuantum = true
	}
	return nil
}

// onePerCertificate returns the first ECDSA and the first RSA suite of
// suites: what a server with either certificate needs.
func onePerCertificate(suites []uint16) []uint16 {
	var out []uint16
	var ec, rsa bool
	for _, s := range suites {
		if e := ecdsaSuite(s); (e && !ec) || (!e && !rsa) {
			out = append(out, s)
			ec, rsa = ec || e, rsa || !e
		}
	}
	return out
}

// checkALPN reports whether protos can be sent in an ALPN extension.
func checkALPN(protos []string) error {
	total := 0
	for _, proto := range protos {
		if len(proto) == 0 || len(proto) > 255 {
			return fmt.Errorf("%w %q", errALPN, proto)
		}
		total += 1 + len(proto)
	}
	if total > 0xffff-2 {
		return fmt.Errorf("%w: %d bytes in total", errALPN, total)
	}
	return nil
}

// filter returns the elements of ours that are in allowed, in our order; a
// nil allowed allows everything.
func filter(ours, allowed []uint16) []uint16 {
	if allowed == nil {
		return slices.Clone(ours)
	}
	out := make([]uint16, 0, len(ours))
	for _, v := range ours {
		if slices.Contains(allowed, v) {
			out = append(out, v)
		}
	}
	return out
}

// hostnameInSNI returns the name to send in SNI: without trailing dots, and
// "" for an IP address (RFC 6066, Section 3). Unlike crypto/tls, it strips
// the dots before looking for an IP address, so that the result is stable
// under utls's own hostnameInSNI, which the SNI extension applies again.
func hostnameInSNI(name string) string {
	name = strings.TrimRight(name, ".")
	host := name
	if len(host) > 0 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if i := strings.LastIndex(host, "%"); i > 0 {
		host = host[:i]
	}
	if maybeIP(host) && net.ParseIP(host) != nil {
		return ""
	}
	return name
}

// maybeIP reports whether name could be an address net.ParseIP accepts (an
// IPv6 address has a colon, an IPv4 one only digits and dots), so that a
// host name costs no failed parse, which allocates its error.
func maybeIP(name string) bool {
	if strings.IndexByte(name, ':') >= 0 {
		return true
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
