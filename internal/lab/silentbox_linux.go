package lab

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A silent box is the simplest box that acknowledges for the server: a
// transparent TCP relay in the router namespace. It terminates the client's
// connections to one port (nft redirect), so the client's kernel sees its
// ClientHello acknowledged whatever happens beyond, and relays the bytes on
// a connection of its own to the client's original destination. On that
// far side, packets longer than FarMTU vanish both ways, with no ICMP: a
// black hole the client's TCP_INFO cannot see. The relay's far connection
// announces the MSS of the client's connection, as boxes that carry the
// client's MSS option over to their far side do, so a clamp on the client
// reaches the far side and gets through: the client sees silence
// unclamped, a reply clamped. (Squid, which opens its far connection with
// its own MSS, cannot be got past from the client: see SquidConfig.FarMTU.)

// silentBoxName is the registered name of the relay.
const silentBoxName = "lab-silent-box"

func init() { RegisterServer(silentBoxName, silentBox) }

// SilentBox is a running silent box (StartSilentBox).
type SilentBox struct {
	// Port is the destination port whose flows from the client the box
	// intercepts.
	Port int
	// FarMTU is the largest packet that crosses its far side; 0: all do.
	FarMTU int
	proc   *Process
}

// Stop stops the relay; its nft table stays until the lab's Close.
func (b *SilentBox) Stop() error { return b.proc.Stop() }

// silentBoxArgs are the relay's arguments.
type silentBoxArgs struct {
	Addr string // where it listens, host:port
}

// silentBoxPort is where the relay listens in the router namespace.
const silentBoxPort = 3130

// StartSilentBox starts a silent box that intercepts the client's IPv4
// flows to port and drops every packet over farMTU bytes on its far side
// (0: none; else MinMTU..MaxMTU), and returns once it listens. It is the
// lab's process, stopped by Close; one per lab. Its nft table is its own
// (inet fitbox), beside the scenario's.
func (l *Lab) StartSilentBox(port, farMTU int) (*SilentBox, error) {
	if farMTU != 0 && (farMTU < MinMTU || farMTU > MaxMTU) {
		return nil, fmt.Errorf("lab: silent box: far MTU %d outside %d..%d", farMTU, MinMTU, MaxMTU)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, _, err := l.startServerIn(ctx, Router, silentBoxName, silentBoxArgs{Addr: fmt.Sprintf("0.0.0.0:%d", silentBoxPort)})
	if err != nil {
		return nil, fmt.Errorf("lab: silent box: %w", err)
	}
	rules := map[Side]string{Router: fmt.Sprintf(`table inet fitbox {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "r0" meta nfproto ipv4 tcp dport %d counter redirect to :%d comment "silent box: intercepted"
	}
%s}
`, port, silentBoxPort, farDrop("input", "iifname \"r1\"", farMTU))}
	if farMTU > 0 {
		rules[Server] = fmt.Sprintf("table inet fitbox {\n%s}\n", farDrop("prerouting", "iifname \"s0\"", farMTU))
	}
	for s, text := range rules {
		cmd := l.Command(context.Background(), s, toolPath("nft"), "-f", "-")
		cmd.Stdin = strings.NewReader(text)
		if err := runCmd(cmd); err != nil {
			p.Stop()
			return nil, fmt.Errorf("lab: silent box: %w\nruleset:\n%s", err, text)
		}
	}
	return &SilentBox{Port: port, FarMTU: farMTU, proc: p}, nil
}

// farDrop is a chain that drops the packets over mtu bytes that come in on
// iif ("" for mtu 0). Packets are dropped where they arrive: a chain on
// the sender's output would see TCP's GSO packets, several segments long,
// before the device splits them.
func farDrop(hook, iif string, mtu int) string {
	if mtu == 0 {
		return ""
	}
	return fmt.Sprintf(`	chain far {
		type filter hook %s priority -300; policy accept;
		%s meta length > %d counter drop comment "silent box: far blackhole"
	}
`, hook, iif, mtu)
}

// silentBox is the relay: each intercepted connection is relayed to its
// original destination over a connection whose MSS is the client's.
func silentBox(ctx context.Context, raw json.RawMessage, ready func(any)) error {
	var a silentBoxArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", a.Addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	ready(map[string]any{"addr": a.Addr, "pid": os.Getpid()})
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() { relay(ctx, c.(*net.TCPConn)) })
	}
}

// relay copies c to and from its original destination until either side
// closes.
func relay(ctx context.Context, c *net.TCPConn) {
	defer c.Close()
	dst, mss, err := intercepted(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "silent box:", err)
		return
	}
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, mss) })
		return errors.Join(err, serr)
	}}
	far, err := d.DialContext(ctx, "tcp4", dst.String())
	if err != nil {
		fmt.Fprintln(os.Stderr, "silent box:", err)
		return
	}
	defer far.Close()
	done := make(chan struct{}, 2)
	pipe := func(w, r net.Conn) {
		io.Copy(w, r)
		w.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}
	go pipe(far, c)
	go pipe(c, far)
	select {
	case <-done:
		<-done
	case <-ctx.Done():
	}
}

// intercepted returns the original destination of a redirected connection
// (SO_ORIGINAL_DST) and the MSS it uses (TCP_MAXSEG: the client's,
// announced in its SYN, less TCP options).
func intercepted(c *net.TCPConn) (netip.AddrPort, int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	var (
		dst  netip.AddrPort
		mss  int
		serr error
	)
	err = rc.Control(func(fd uintptr) {
		// struct sockaddr_in, as getsockopt(SOL_IP, SO_ORIGINAL_DST)
		// fills it: family, port (big endian), address.
		var sa [16]byte
		n := uint32(len(sa))
		if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_IP, unix.SO_ORIGINAL_DST,
			uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&n)), 0); e != 0 {
			serr = os.NewSyscallError("getsockopt SO_ORIGINAL_DST", e)
			return
		}
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), binary.BigEndian.Uint16(sa[2:4]))
		mss, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG)
	})
	return dst, mss, errors.Join(err, serr)
}
