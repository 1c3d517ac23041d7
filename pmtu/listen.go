package pmtu

import "net"

// ListenConfigWithMTU returns a copy of lc whose TCP listeners clamp the MSS
// of every connection they accept so that every packet fits mtu, both ways:
// it sets TCP_MAXSEG on the listening socket before it binds, and the
// kernel then advertises the clamp in each SYN-ACK and bounds its own
// segments by it. The MSS is [MSSForMTU](mtu, false) for a "tcp4" socket
// and [MSSForMTU](mtu, true) for a "tcp6" one; a dual-stack "tcp" listener
// is an IPv6 socket, so its IPv4 clients get the IPv6 value (20 bytes
// smaller than they need). Setting TCP_MAXSEG on a connection after
// Accept does not change what it sends: the SYN-ACK is gone and the send
// MSS stays (measured on Linux 6.18); it has to be the listener.
//
// A nil lc is the zero [net.ListenConfig]. The clamp runs first, then lc's
// own Control, and an error from either fails the listen. Multipath TCP is
// left as lc has it: on Linux TCP_MAXSEG set on an MPTCP listener clamps
// the connections it accepts as on a plain TCP one.
//
// An mtu of 0 returns a plain copy. ListenConfigWithMTU returns an
// [*MTUError] for an mtu that [ValidateMTU] rejects, and [ErrUnsupported]
// for a non-zero mtu outside Linux, where a listener's TCP_MAXSEG is not
// known to reach the connections it accepts. It never modifies lc.
func ListenConfigWithMTU(lc *net.ListenConfig, mtu int) (*net.ListenConfig, error) {
	return listenWithClamp(lc, ValidateMTU(mtu), MSSForMTU(mtu, false), MSSForMTU(mtu, true))
}

// ListenConfigWithMSS is like [ListenConfigWithMTU] with a fixed TCP_MAXSEG
// value for both families. It returns an [*MSSError] for an mss that
// [ValidateMSS] rejects.
func ListenConfigWithMSS(lc *net.ListenConfig, mss int) (*net.ListenConfig, error) {
	return listenWithClamp(lc, ValidateMSS(mss), mss, mss)
}

// listenWithClamp is ListenConfigWithMTU and ListenConfigWithMSS, as
// dialerWithClamp is for dialers.
func listenWithClamp(lc *net.ListenConfig, invalid error, v4, v6 int) (*net.ListenConfig, error) {
	lc2 := new(net.ListenConfig)
	if lc != nil {
		*lc2 = *lc
	}
	switch {
	case invalid != nil:
		return nil, invalid
	case v4 == 0 && v6 == 0:
		return lc2, nil
	case !listenClampSupported:
		return nil, ErrUnsupported
	}
	lc2.Control = clampControl(nil, v4, v6, lc2.Control)
	return lc2, nil
}
