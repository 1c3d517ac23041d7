// Package reset closes TCP connections with a reset (RST) instead of a FIN.
package reset

import "net"

// Close closes c with a TCP reset when c is a TCP connection (it, or c,
// has SetLinger: *net.TCPConn): the peer learns at once that the
// connection is gone, and neither end keeps it open to retransmit. A FIN
// would queue behind bytes the path lost, and leave the server's side open
// (and resending) until it times out. Other connections are closed as
// usual. It returns Close's error.
func Close(c net.Conn) error {
	if l, ok := c.(interface{ SetLinger(sec int) error }); ok {
		l.SetLinger(0)
	}
	return c.Close()
}
