// Package utlsconv converts between crypto/tls and utls types.
//
// fitshake takes a *tls.Config from its callers and returns connections that
// look like crypto/tls connections, but builds and sends its ClientHello with
// utls (github.com/refraction-networking/utls), whose types mirror crypto/tls
// without being the same types. This package holds the conversions, field by
// field, in one place.
//
// What is carried over, and what is not, is documented on each function.
package utlsconv

import (
	"crypto/tls"
	"reflect"
	"slices"
	"unsafe"

	utls "github.com/refraction-networking/utls"
)

// Config returns a new utls.Config carrying over the client-side settings of
// c. A nil c gives a zero utls.Config.
//
// Carried over: Rand, Time, Certificates, GetClientCertificate (wrapped),
// RootCAs, NextProtos, ServerName, InsecureSkipVerify, VerifyPeerCertificate,
// VerifyConnection (wrapped), CipherSuites, MinVersion, MaxVersion,
// CurvePreferences, DynamicRecordSizingDisabled, Renegotiation, KeyLogWriter,
// SessionTicketsDisabled, EncryptedClientHelloConfigList and
// EncryptedClientHelloRejectionVerify (wrapped). Every slice is copied, so
// utls, which writes into its Config (NextProtos, CurvePreferences,
// ServerName, versions), never touches c.
//
// Not carried over:
//   - ClientSessionCache: crypto/tls and utls caches have different types and
//     session states cannot be converted, so sessions are never resumed. This
//     also keeps the ClientHello size known before sending (a resumption PSK
//     adds about 150 bytes).
//   - Server-only fields (GetCertificate, NameToCertificate,
//     GetConfigForClient, ClientAuth, ClientCAs, PreferServerCipherSuites,
//     SessionTicketKey, UnwrapSession, WrapSession,
//     GetEncryptedClientHelloKeys, EncryptedClientHelloKeys): meaningless for
//     a client.
//
// The utls-only fields (InsecureSkipTimeVerify, InsecureServerNameToVerify,
// OmitEmptyPsk, PreferSkipResumptionOnNilExtension, ApplicationSettings,
// PQSignatureSchemesEnabled) are left at their zero values.
func Config(c *tls.Config) *utls.Config {
	if c == nil {
		return &utls.Config{}
	}
	u := &utls.Config{
		Rand:                           c.Rand,
		Time:                           c.Time,
		Certificates:                   certificates(c.Certificates),
		RootCAs:                        c.RootCAs,
		NextProtos:                     slices.Clone(c.NextProtos),
		ServerName:                     c.ServerName,
		InsecureSkipVerify:             c.InsecureSkipVerify,
		VerifyPeerCertificate:          c.VerifyPeerCertificate,
		CipherSuites:                   slices.Clone(c.CipherSuites),
		SessionTicketsDisabled:         c.SessionTicketsDisabled,
		MinVersion:                     c.MinVersion,
		MaxVersion:                     c.MaxVersion,
		CurvePreferences:               curveIDs(c.CurvePreferences),
		DynamicRecordSizingDisabled:    c.DynamicRecordSizingDisabled,
		Renegotiation:                  utls.RenegotiationSupport(c.Renegotiation),
		KeyLogWriter:                   c.KeyLogWriter,
		EncryptedClientHelloConfigList: slices.Clone(c.EncryptedClientHelloConfigList),
	}
	if f := c.GetClientCertificate; f != nil {
		u.GetClientCertificate = func(ri *utls.CertificateRequestInfo) (*utls.Certificate, error) {
			cert, err := f(CertificateRequestInfo(ri))
			if err != nil {
				return nil, err
			}
			if cert == nil {
				// crypto/tls requires a non-nil result; an empty
				// Certificate means "no client certificate".
				return &utls.Certificate{}, nil
			}
			uc := certificate(*cert)
			return &uc, nil
		}
	}
	if f := c.VerifyConnection; f != nil {
		u.VerifyConnection = func(s utls.ConnectionState) error {
			return f(ConnectionState(s))
		}
	}
	if f := c.EncryptedClientHelloRejectionVerify; f != nil {
		u.EncryptedClientHelloRejectionVerify = func(s utls.ConnectionState) error {
			return f(ConnectionState(s))
		}
	}
	return u
}

// Certificate converts a crypto/tls certificate to its utls equivalent. The
// outer slices are copied; the DER bytes and the private key are shared.
func Certificate(c tls.Certificate) utls.Certificate {
	return certificate(c)
}

func certificate(c tls.Certificate) utls.Certificate {
	return utls.Certificate{
		Certificate:                  slices.Clone(c.Certificate),
		PrivateKey:                   c.PrivateKey,
		SupportedSignatureAlgorithms: signatureSchemes(c.SupportedSignatureAlgorithms),
		OCSPStaple:                   slices.Clone(c.OCSPStaple),
		SignedCertificateTimestamps:  slices.Clone(c.SignedCertificateTimestamps),
		Leaf:                         c.Leaf,
	}
}

func certificates(cs []tls.Certificate) []utls.Certificate {
	if cs == nil {
		return nil
	}
	out := make([]utls.Certificate, len(cs))
	for i, c := range cs {
		out[i] = certificate(c)
	}
	return out
}

// CertificateRequestInfo converts a utls certificate request to its
// crypto/tls equivalent, including the handshake context returned by its
// Context method. A nil ri gives nil.
func CertificateRequestInfo(ri *utls.CertificateRequestInfo) *tls.CertificateRequestInfo {
	if ri == nil {
		return nil
	}
	out := &tls.CertificateRequestInfo{
		AcceptableCAs:    slices.Clone(ri.AcceptableCAs),
		SignatureSchemes: signatureSchemesToTLS(ri.SignatureSchemes),
		Version:          ri.Version,
	}
	if ctx := ri.Context(); ctx != nil {
		// crypto/tls offers no way to set the context of a
		// CertificateRequestInfo; without it, Context() returns nil and a
		// callback calling ctx.Done() would panic.
		setUnexported(out, "ctx", ctx)
	}
	return out
}

// ConnectionState converts a utls connection state to its crypto/tls
// equivalent, field by field.
//
// CurveID and HelloRetryRequest are filled from fields that utls keeps but
// does not export; when a future utls drops them they read as zero, and
// CurveID(uc) gives the group of a TLS 1.3 connection. ExportKeyingMaterial
// on the result calls the utls connection's exporter. LocalCertificate
// (Go 1.27 and later: the chain this side sent) stays nil: utls v1.8.2 does
// not record which client certificate it sent.
func ConnectionState(s utls.ConnectionState) tls.ConnectionState {
	out := tls.ConnectionState{
		Version:                     s.Version,
		HandshakeComplete:           s.HandshakeComplete,
		DidResume:                   s.DidResume,
		CipherSuite:                 s.CipherSuite,
		CurveID:                     tls.CurveID(unexportedUint(s, "testingOnlyCurveID")),
		NegotiatedProtocol:          s.NegotiatedProtocol,
		NegotiatedProtocolIsMutual:  s.NegotiatedProtocolIsMutual,
		ServerName:                  s.ServerName,
		PeerCertificates:            s.PeerCertificates,
		VerifiedChains:              s.VerifiedChains,
		SignedCertificateTimestamps: s.SignedCertificateTimestamps,
		OCSPResponse:                s.OCSPResponse,
		TLSUnique:                   s.TLSUnique,
		ECHAccepted:                 s.ECHAccepted,
		HelloRetryRequest:           unexportedBool(s, "testingOnlyDidHRR"),
	}
	if hasEKM(s) {
		ekm := func(label string, context []byte, length int) ([]byte, error) {
			return s.ExportKeyingMaterial(label, context, length)
		}
		setUnexported(&out, "ekm", ekm)
	}
	return out
}

// CurveID returns the key exchange group the server chose in its TLS 1.3
// ServerHello, or 0 when it is unknown: uc is nil, the handshake has not
// reached the ServerHello, or TLS 1.2 was negotiated (its group is sent in
// ServerKeyExchange; ConnectionState fills CurveID for it).
func CurveID(uc *utls.UConn) tls.CurveID {
	if uc == nil || uc.HandshakeState.ServerHello == nil {
		return 0
	}
	return tls.CurveID(uc.HandshakeState.ServerHello.ServerShare.Group)
}

func curveIDs(ids []tls.CurveID) []utls.CurveID {
	if ids == nil {
		return nil
	}
	out := make([]utls.CurveID, len(ids))
	for i, id := range ids {
		out[i] = utls.CurveID(id)
	}
	return out
}

func signatureSchemes(ss []tls.SignatureScheme) []utls.SignatureScheme {
	if ss == nil {
		return nil
	}
	out := make([]utls.SignatureScheme, len(ss))
	for i, s := range ss {
		out[i] = utls.SignatureScheme(s)
	}
	return out
}

func signatureSchemesToTLS(ss []utls.SignatureScheme) []tls.SignatureScheme {
	if ss == nil {
		return nil
	}
	out := make([]tls.SignatureScheme, len(ss))
	for i, s := range ss {
		out[i] = tls.SignatureScheme(s)
	}
	return out
}

// unexportedUint reads an unsigned integer field that v's type does not
// export, or 0 when there is no such field.
func unexportedUint(v any, name string) uint64 {
	f := reflect.ValueOf(v).FieldByName(name)
	if !f.IsValid() || !f.CanUint() {
		return 0
	}
	return f.Uint()
}

// unexportedBool reads a bool field that v's type does not export, or false
// when there is no such field.
func unexportedBool(v any, name string) bool {
	f := reflect.ValueOf(v).FieldByName(name)
	if !f.IsValid() || f.Kind() != reflect.Bool {
		return false
	}
	return f.Bool()
}

// hasEKM reports whether s carries a keying material exporter, so that
// calling s.ExportKeyingMaterial does not dereference a nil func.
func hasEKM(s utls.ConnectionState) bool {
	f := reflect.ValueOf(s).FieldByName("ekm")
	return f.IsValid() && f.Kind() == reflect.Func && !f.IsNil()
}

// setUnexported sets the field name of the struct *ptr to value when the
// field exists and value is assignable to it; it reports whether it did. It
// fills crypto/tls fields that have no setter (a context, an exporter), and
// degrades to doing nothing if a future Go renames them.
func setUnexported(ptr any, name string, value any) bool {
	f := reflect.ValueOf(ptr).Elem().FieldByName(name)
	v := reflect.ValueOf(value)
	if !f.IsValid() || !v.Type().AssignableTo(f.Type()) {
		return false
	}
	reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Set(v)
	return true
}
