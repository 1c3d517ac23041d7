package tlsdial

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/fitshake/fitshake/internal/utlsconv"
	utls "github.com/refraction-networking/utls"
)

// Conn is a TLS connection made by Dialer, with the handshake complete.
// Its methods are safe for concurrent use as those of tls.Conn are.
type Conn struct {
	tc     tlsConn
	raw    net.Conn
	step   step
	report Report
}

// tlsConn is the TLS side of a Conn: a *tls.Conn where crypto/tls sent the
// hello, a *utls.UConn where utls did.
type tlsConn interface {
	net.Conn
	CloseWrite() error
}

var _ net.Conn = (*Conn)(nil)

func (c *Conn) Read(b []byte) (int, error)         { return c.tc.Read(b) }
func (c *Conn) Write(b []byte) (int, error)        { return c.tc.Write(b) }
func (c *Conn) Close() error                       { return c.tc.Close() }
func (c *Conn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.raw.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.tc.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.tc.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.tc.SetWriteDeadline(t) }

// CloseWrite shuts down the writing side after sending close_notify.
func (c *Conn) CloseWrite() error { return c.tc.CloseWrite() }

// NetConn returns the underlying TCP connection. Writing to or reading from
// it corrupts the TLS session.
func (c *Conn) NetConn() net.Conn { return c.raw }

// ConnectionState returns the state of the TLS connection in crypto/tls
// terms, CurveID included, so code written for *tls.Conn keeps working.
func (c *Conn) ConnectionState() tls.ConnectionState { return stateOf(c.tc) }

// stateOf returns tc's state in crypto/tls terms.
func stateOf(tc tlsConn) tls.ConnectionState {
	if c, ok := tc.(*tls.Conn); ok {
		return c.ConnectionState()
	}
	uc := tc.(*utls.UConn)
	s := utlsconv.ConnectionState(uc.ConnectionState())
	s.CurveID = utlsconv.CurveID(uc)
	return s
}

// Report describes how the connection was established: every attempt,
// and the MSS and ClientHello size that worked.
func (c *Conn) Report() Report { return c.report.clone() }
