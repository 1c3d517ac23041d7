//go:build !linux

package pmtu

// Everywhere but Linux: TCP_MAXSEG through package syscall on the
// BSD-derived stacks, which accept it before connect as Linux does; no
// TCP_INFO.

import (
	"os"
	"runtime"
	"syscall"
)

// Socket option numbers, the same on every platform where clampSupported
// is true (package syscall has no TCP_MAXSEG on Windows or wasm, so the
// names cannot be taken from it in a file built there).
const (
	ipprotoTCP = 6 // IPPROTO_TCP
	tcpMaxSeg  = 2 // TCP_MAXSEG on darwin, ios, the BSDs and illumos
)

// clampSupported reports whether setsockopt(TCP_MAXSEG) before connect
// works on this platform.
var clampSupported = map[string]bool{
	"darwin":    true,
	"ios":       true,
	"freebsd":   true,
	"netbsd":    true,
	"openbsd":   true,
	"dragonfly": true,
	"illumos":   true,
	"solaris":   true,
}[runtime.GOOS]

func setMSS(c syscall.RawConn, mss int) error {
	if !clampSupported {
		return ErrUnsupported
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = sockopt(syscall.SetsockoptInt, fd, mss)
	}); err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("setsockopt", serr)
	}
	return nil
}

func getMSS(c syscall.RawConn) (int, error) {
	if !clampSupported {
		return 0, ErrUnsupported
	}
	var (
		mss  int
		serr error
	)
	if err := c.Control(func(fd uintptr) {
		mss, serr = getsockopt(syscall.GetsockoptInt, fd)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, os.NewSyscallError("getsockopt", serr)
	}
	return mss, nil
}

func getTCPInfo(syscall.RawConn) (TCPInfo, error) {
	return TCPInfo{}, ErrUnsupported
}

// sockopt and getsockopt call package syscall's SetsockoptInt and
// GetsockoptInt, whose descriptor is an int on Unix and a Handle on
// Windows, with a RawConn descriptor; the type parameter lets one file
// build on both. They are only called where clampSupported is true.
func sockopt[FD ~int | ~uintptr](set func(FD, int, int, int) error, fd uintptr, v int) error {
	return set(FD(fd), ipprotoTCP, tcpMaxSeg, v)
}

func getsockopt[FD ~int | ~uintptr](get func(FD, int, int) (int, error), fd uintptr) (int, error) {
	return get(FD(fd), ipprotoTCP, tcpMaxSeg)
}
