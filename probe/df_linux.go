package probe

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// measures reports whether this platform gives the whole measurement
// (TCP_INFO and the MSS clamp).
const measures = true

// forceDF is a net.Dialer.Control that turns path MTU discovery on (DF
// set) for an IPv4 socket, whatever net.ipv4.ip_no_pmtu_disc says.
func forceDF(network, _ string, c syscall.RawConn) error {
	if network != "tcp4" {
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
	}); err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("setsockopt", serr)
	}
	return nil
}

// clearsDF reports whether IPv4 sockets of this system leave DF clear by
// default (net.ipv4.ip_no_pmtu_disc): their large packets get fragmented
// instead of discovering the path MTU.
func clearsDF() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_no_pmtu_disc")
	return err == nil && len(b) > 0 && b[0] != '0'
}
