// Package fitgrpc runs gRPC (grpc-go) over fitshake's own TLS dialer,
// tlsdial.Dialer: its ClientHello (compact and post-quantum when the path
// refuses the full one), its Report, and its recovery from path-MTU black
// holes, for every connection of a gRPC channel.
//
// # Which dialer
//
// Most gRPC clients need no package: tlsdial.TCPDialer under grpc's own TLS
// credentials protects crypto/tls's ClientHello, and keeps everything else
// of grpc's TLS as it is:
//
//	td := &tlsdial.TCPDialer{}
//	conn, err := grpc.NewClient(target,
//		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{})),
//		grpc.WithContextDialer(td.ContextDialer("tcp")))
//
// Use this package when the Dialer's own hello is wanted: a middlebox that
// refuses crypto/tls's hello (a split or large hello), or the Report of
// each connection.
//
// # Why two options
//
// grpc's credentials.TransportCredentials shake hands over a connection
// grpc dialed (ClientHandshake(ctx, authority, rawConn)), but a
// tlsdial.Dialer opens its own connections: it redials with a smaller MSS
// and races attempts, so it cannot take one connection handed to it. The
// credentials could close grpc's connection and dial anew, at the price of
// a wasted connection per dial. [DialOptions] instead pairs the
// credentials with a context dialer that opens nothing: it only records
// the address grpc resolved, and the credentials' handshake dials it with
// the Dialer, the server name taken from grpc's authority. Both options
// must be used together ([ContextDialer] is the first, for callers that
// wrap the credentials); [Credentials] alone fail every handshake with
// [ErrNoDialer]. Targets are TCP addresses (not unix sockets).
package fitgrpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/fitshake/fitshake/tlsdial"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// ErrNoDialer is returned by the handshake of [Credentials] on a connection
// that [DialOptions]' context dialer did not make.
var ErrNoDialer = errors.New("fitgrpc: the credentials need the context dialer of fitgrpc.DialOptions")

// ErrNoH2 is returned when the server did not negotiate HTTP/2 (ALPN "h2"),
// which gRPC needs, as grpc's own TLS credentials require.
var ErrNoH2 = errors.New("fitgrpc: the server did not negotiate ALPN h2")

// DialOptions returns the two options that make a gRPC client dial with d:
// a context dialer and the transport credentials. A nil d is the zero
// tlsdial.Dialer (system roots, the default cache). d's Config is never
// modified: an empty ServerName is taken from grpc's authority (the
// target's host, or grpc.WithAuthority), and empty NextProtos become "h2".
// Pass the options with any others:
//
//	opts := append(fitgrpc.DialOptions(d), grpc.WithKeepaliveParams(kp))
//	conn, err := grpc.NewClient(target, opts...)
func DialOptions(d *tlsdial.Dialer) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithContextDialer(ContextDialer),
		grpc.WithTransportCredentials(Credentials(d)),
	}
}

// Credentials returns transport credentials that complete the TLS
// handshake with d on the address [DialOptions]' context dialer recorded.
// The AuthInfo they return is a credentials.TLSInfo, as with grpc's own
// TLS credentials. They are client credentials only: ServerHandshake fails.
func Credentials(d *tlsdial.Dialer) credentials.TransportCredentials {
	if d == nil {
		d = &tlsdial.Dialer{}
	}
	return &creds{d: d}
}

type creds struct {
	d          *tlsdial.Dialer
	serverName string // from OverrideServerName
}

// ClientHandshake dials the address recorded in rawConn with the Dialer.
func (c *creds) ClientHandshake(ctx context.Context, authority string, rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	a, ok := rawConn.(*addrConn)
	if !ok {
		return nil, nil, ErrNoDialer
	}
	d := *c.d
	d.Config = c.config(authority)
	conn, err := d.DialContext(ctx, a.network, a.addr)
	if err != nil {
		return nil, nil, err
	}
	tc := conn.(*tlsdial.Conn)
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol != "h2" {
		tc.Close()
		return nil, nil, fmt.Errorf("%w (got %q)", ErrNoH2, cs.NegotiatedProtocol)
	}
	return tc, credentials.TLSInfo{
		State:          cs,
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}, nil
}

// config returns a clone of the Dialer's config with the server name and
// ALPN gRPC needs.
func (c *creds) config(authority string) *tls.Config {
	cfg := &tls.Config{}
	if c.d.Config != nil {
		cfg = c.d.Config.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = c.serverName
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(authority)
		if err != nil {
			host = authority // an authority without a port
		}
		cfg.ServerName = host
	}
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"h2"}
	}
	return cfg
}

func (c *creds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("fitgrpc: client credentials only")
}

func (c *creds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2", ServerName: c.serverName}
}

func (c *creds) Clone() credentials.TransportCredentials {
	cc := *c
	return &cc
}

// OverrideServerName sets the server name the certificate is checked
// against when the Dialer's Config has none (grpc deprecates it in favour
// of grpc.WithAuthority, which works too).
func (c *creds) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}

// ContextDialer is the context dialer of DialOptions, for callers that
// wrap the credentials (to observe connections, say) and so pass the two
// options themselves: grpc.WithContextDialer(fitgrpc.ContextDialer). It
// opens nothing: it returns a placeholder holding addr, which the
// handshake of [Credentials] dials.
func ContextDialer(_ context.Context, addr string) (net.Conn, error) {
	return &addrConn{network: "tcp", addr: addr}, nil
}

// addrConn is an address waiting for the credentials to dial it. gRPC
// holds it between its dial and the handshake (and may close it if the
// connect deadline passes first); it carries no data.
type addrConn struct{ network, addr string }

var errNotConnected = errors.New("fitgrpc: not connected (the credentials dial)")

func (a *addrConn) Read([]byte) (int, error)         { return 0, errNotConnected }
func (a *addrConn) Write([]byte) (int, error)        { return 0, errNotConnected }
func (a *addrConn) Close() error                     { return nil }
func (a *addrConn) LocalAddr() net.Addr              { return pendingAddr("") }
func (a *addrConn) RemoteAddr() net.Addr             { return pendingAddr(a.addr) }
func (a *addrConn) SetDeadline(time.Time) error      { return nil }
func (a *addrConn) SetReadDeadline(time.Time) error  { return nil }
func (a *addrConn) SetWriteDeadline(time.Time) error { return nil }

// pendingAddr is the address of an addrConn.
type pendingAddr string

func (p pendingAddr) Network() string { return "tcp" }
func (p pendingAddr) String() string  { return string(p) }
