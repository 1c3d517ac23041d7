package steer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/fitshake/fitshake/pmtu"
)

// Listen opens the twin listeners of a [Group] on addr: network is "tcp"
// (dual-stack for a wildcard address), "tcp4" or "tcp6"; an addr with port
// 0 gets a port the kernel picks, the same for both twins. The clamped
// twin sets TCP_MAXSEG to mss, [pmtu.MinMSS] to [pmtu.MaxMSS]: for a
// dual-stack group choose the IPv6 value, [pmtu.MSSForMTU](mtu, true),
// which fits both families. No prefix is clamped until
// [Group.SetClamped].
//
// ctx bounds the listens, as for [net.ListenConfig.Listen]. Errors from
// the kernel are returned as from net.Listen; an mss out of range as an
// error wrapping [*pmtu.MSSError].
func Listen(ctx context.Context, network, addr string, mss int) (*Group, error) {
	return ListenTwins(ctx, network, addr, []int{mss})
}

// ListenTwins is Listen with a clamped twin for each of mss, in order (at
// least one, none twice): one per family of a dual-stack group, say, or
// per rung of a ladder of clamps. [Group.SetClamps] chooses a prefix's.
func ListenTwins(ctx context.Context, network, addr string, mss []int) (*Group, error) {
	if err := validate(network, mss); err != nil {
		return nil, err
	}
	lc := &net.ListenConfig{Control: reusePort}
	lc.SetMultipathTCP(false) // an MPTCP socket refuses SO_ATTACH_REUSEPORT_CBPF
	l0, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	// A group someone else formed first would shift the indices, and its
	// program is not ours to replace.
	if err := alone(l0.(*net.TCPListener)); err != nil {
		l0.Close()
		return nil, err
	}
	lns := []*net.TCPListener{l0.(*net.TCPListener)}
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	// Steer every SYN to the unclamped twin before the clamped ones join:
	// with no program the kernel would hash SYNs among them.
	if err := attach(lns[0], program(nil, skfNetOff)); err != nil {
		closeAll()
		return nil, err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		closeAll()
		return nil, err
	}
	port := strconv.Itoa(lns[0].Addr().(*net.TCPAddr).Port)
	for _, m := range mss {
		clc, err := pmtu.ListenConfigWithMSS(lc, m)
		if err != nil {
			closeAll()
			return nil, err
		}
		ln, err := clc.Listen(ctx, network, net.JoinHostPort(host, port))
		if err != nil {
			closeAll()
			return nil, err
		}
		lns = append(lns, ln.(*net.TCPListener))
	}
	if err := alone(lns...); err != nil {
		closeAll()
		return nil, err
	}
	return newGroup(lns, mss), nil
}

// alone returns a *SharedError if a socket other than lns listens on
// their address, as /proc/self/net/tcp and tcp6 tell (by socket inode), or
// nil, also when those files cannot be read.
func alone(lns ...*net.TCPListener) error {
	ours := map[string]bool{}
	for _, ln := range lns {
		ino, err := inode(ln)
		if err != nil {
			return nil
		}
		ours[ino] = true
	}
	for _, name := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil
		}
		listening := map[string][]string{} // local address → inodes
		var local string
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // TCP_LISTEN
				continue
			}
			listening[f[1]] = append(listening[f[1]], f[9])
			if ours[f[9]] {
				local = f[1]
			}
		}
		if local == "" {
			continue
		}
		others := 0
		for _, ino := range listening[local] {
			if !ours[ino] {
				others++
			}
		}
		if others > 0 {
			return &SharedError{Addr: local, Others: others}
		}
	}
	return nil
}

// inode returns the inode number of ln's socket, as /proc/net/tcp shows it.
func inode(ln *net.TCPListener) (string, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return "", err
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		return "", err
	}
	if serr != nil {
		return "", serr
	}
	return strconv.FormatUint(st.Ino, 10), nil
}

// reusePort sets SO_REUSEPORT, so that both twins can bind the address.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt", serr)
}

// attach attaches the program that steers ps[i] to twin index[i] to the
// group through the first twin still open (any socket of a reuseport group
// sets the group's program).
func (g *Group) attach(ps []netip.Prefix, index []uint32) error {
	prog := programTo(ps, index, skfNetOff)
	var err error
	for _, ln := range g.lns {
		if err = attach(ln, prog); !errors.Is(err, net.ErrClosed) {
			break
		}
	}
	return err
}

// attach sets prog as the reuseport program of ln's group.
func attach(ln *net.TCPListener, prog []bpf.Instruction) error {
	raw, err := assemble(prog)
	if err != nil {
		return err
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: unsafe.SliceData(filter)}
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("steer: attaching the reuseport program: %w", os.NewSyscallError("setsockopt", serr))
	}
	return nil
}
