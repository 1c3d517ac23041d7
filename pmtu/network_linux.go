package pmtu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netlinkTimeout bounds the wait for the kernel's answer, which comes at
// once; it only guards against a kernel that never answers.
const netlinkTimeout = time.Second

// lookupRoute asks the kernel for the route to dst, as "ip route get"
// does: an RTM_GETROUTE request on a NETLINK_ROUTE socket, which needs no
// privilege (x/sys/unix for the socket, package syscall for parsing). The
// interface's name comes from its index by SIOCGIFNAME on the same socket:
// net.InterfaceByIndex dumps every link and took 100–250 µs, most of a
// first dial's lookup.
func lookupRoute(dst netip.Addr) (route, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return route{}, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(netlinkTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return route{}, os.NewSyscallError("setsockopt", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return route{}, os.NewSyscallError("bind", err)
	}
	const seq = 1
	if err := unix.Sendto(fd, routeRequest(dst, seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return route{}, os.NewSyscallError("sendto", err)
	}
	buf := make([]byte, 8192)
	for {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return route{}, os.NewSyscallError("recvfrom", err)
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue // not from the kernel
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return route{}, fmt.Errorf("pmtu: netlink: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return route{}, errors.New("pmtu: netlink: short error message")
				}
				if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
					return route{}, os.NewSyscallError("RTM_GETROUTE", unix.Errno(-e))
				}
			case unix.RTM_NEWROUTE:
				return parseRoute(fd, &m)
			}
		}
	}
}

// routeRequest is an RTM_GETROUTE message asking for the route to dst.
func routeRequest(dst netip.Addr, seq uint32) []byte {
	ip := dst.AsSlice()
	family := byte(unix.AF_INET)
	if dst.Is6() {
		family = unix.AF_INET6
	}
	attrLen := unix.SizeofRtAttr + len(ip) // 4 or 16 bytes: aligned
	n := unix.SizeofNlMsghdr + unix.SizeofRtMsg + attrLen
	b := make([]byte, n)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(n))
	ne.PutUint16(b[4:], unix.RTM_GETROUTE)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(b[8:], seq)
	rt := b[unix.SizeofNlMsghdr:]
	rt[0] = family            // rtm_family
	rt[1] = byte(8 * len(ip)) // rtm_dst_len
	a := rt[unix.SizeofRtMsg:]
	ne.PutUint16(a[0:], uint16(attrLen))
	ne.PutUint16(a[2:], unix.RTA_DST)
	copy(a[unix.SizeofRtAttr:], ip)
	return b
}

// parseRoute reads an RTM_NEWROUTE answer.
// fd is the socket it came on, for the interface's name.
func parseRoute(fd int, m *syscall.NetlinkMessage) (route, error) {
	if len(m.Data) < unix.SizeofRtMsg {
		return route{}, errors.New("pmtu: netlink: short route message")
	}
	var r route
	switch m.Data[7] { // rtm_type
	case unix.RTN_LOCAL, unix.RTN_BROADCAST, unix.RTN_MULTICAST:
		r.local = true
	}
	attrs, err := syscall.ParseNetlinkRouteAttr(m)
	if err != nil {
		return route{}, fmt.Errorf("pmtu: netlink: %w", err)
	}
	index := 0
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.RTA_OIF:
			if len(a.Value) >= 4 {
				index = int(binary.NativeEndian.Uint32(a.Value))
			}
		case unix.RTA_GATEWAY:
			r.gateway, _ = netip.AddrFromSlice(a.Value)
		case unix.RTA_PREFSRC:
			r.src, _ = netip.AddrFromSlice(a.Value)
		}
	}
	if index > 0 {
		r.dev = interfaceName(fd, index)
	}
	return r, nil
}

// interfaceName returns the name of the interface with index, asked of
// the kernel with SIOCGIFNAME on the socket fd; "ifINDEX" if it cannot
// say (the interface went away meanwhile).
func interfaceName(fd, index int) string {
	ifr, err := unix.NewIfreq("")
	if err == nil {
		ifr.SetUint32(uint32(index))
		err = unix.IoctlIfreq(fd, unix.SIOCGIFNAME, ifr)
	}
	if err != nil || ifr.Name() == "" {
		return fmt.Sprintf("if%d", index)
	}
	return ifr.Name()
}
