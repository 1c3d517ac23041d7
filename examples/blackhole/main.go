// Command blackhole shows a TLS handshake stalling on a path that drops
// packets over 1400 bytes, and fitshake recovering from it. It needs no
// root: the black hole is a loopback proxy (package pmtutest).
//
//	go run ./examples/blackhole
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fitshake/fitshake/internal/testcert"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
)

func main() {
	mtu := flag.Int("mtu", 1400, "emulated path MTU: packets over this many bytes vanish")
	stockWait := flag.Duration("stock-timeout", 2*time.Second, "how long the stock crypto/tls dial may wait")
	flag.Parse()
	if err := run(os.Stdout, *mtu, *stockWait); err != nil {
		fmt.Fprintln(os.Stderr, "blackhole:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, mtu int, stockWait time.Duration) error {
	ca, err := testcert.NewCA()
	if err != nil {
		return err
	}
	cert, err := ca.Issue([]string{"demo.fitshake.test"}, 0)
	if err != nil {
		return err
	}
	ln, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	})
	if err != nil {
		return err
	}
	defer ln.Close()
	go serve(ln)

	proxy, err := pmtutest.Start(pmtutest.Config{Target: ln.Addr().String(), MTU: mtu})
	if errors.Is(err, pmtu.ErrUnsupported) {
		return fmt.Errorf("the simulator needs Linux (it reads the accepted socket's MSS): %w", err)
	}
	if err != nil {
		return err
	}
	defer proxy.Close()
	addr := proxy.Addr()
	cfg := &tls.Config{RootCAs: ca.Pool, ServerName: "demo.fitshake.test", NextProtos: []string{"h2", "http/1.1"}}

	fmt.Fprintf(w, "A TLS server behind a path that silently drops packets over %d bytes (no ICMP).\n", mtu)
	fmt.Fprintf(w, "(The simulator is a userspace proxy: it acknowledges what it swallows, so the client's kernel\n"+
		"sees a silent server and fitshake races a clamped attempt after its %s window, then the next\n"+
		"clamp after three more windows if needed. Through a real black hole TCP_INFO shows the loss within\n"+
		"a round trip: see BENCHMARKS.md.)\n\n", 250*time.Millisecond)

	// 1. Stock crypto/tls.
	ctx, cancel := context.WithTimeout(context.Background(), stockWait)
	t0 := time.Now()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		cancel()
		return err
	}
	fw := &firstWrite{Conn: raw}
	tc := tls.Client(fw, cfg)
	err = tc.HandshakeContext(ctx)
	cancel()
	tc.Close()
	if err == nil {
		fmt.Fprintf(w, "stock crypto/tls:  completed in %s (the path is not broken?)\n", since(t0))
	} else {
		fmt.Fprintf(w, "stock crypto/tls:  %d-byte ClientHello, no reply — gave up after %s (%v)\n",
			fw.n.Load(), since(t0), err)
	}

	// 2. tlsdial.Dialer, its own cache so the demo starts cold.
	cache := &pmtu.Cache{}
	d := &tlsdial.Dialer{Config: cfg, Cache: cache}
	t0 = time.Now()
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("fitshake Dialer: %w", err)
	}
	conn := c.(*tlsdial.Conn)
	fmt.Fprintf(w, "\nfitshake Dialer:   completed in %s, ALPN %q\n", since(t0), conn.ConnectionState().NegotiatedProtocol)
	printReport(w, conn.Report())
	conn.Close()

	// 3. The same destination again: the clamp is remembered.
	t0 = time.Now()
	c, err = d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("fitshake Dialer, second dial: %w", err)
	}
	fmt.Fprintf(w, "\nagain, from memory: completed in %s\n", since(t0))
	printReport(w, c.(*tlsdial.Conn).Report())
	c.Close()

	// 4. crypto/tls on top of TCPDialer: what net/http users get.
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	t0 = time.Now()
	raw, err = td.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("fitshake TCPDialer: %w", err)
	}
	tc = tls.Client(raw, cfg)
	if err := tc.HandshakeContext(context.Background()); err != nil {
		return fmt.Errorf("crypto/tls over fitshake TCPDialer: %w", err)
	}
	fmt.Fprintf(w, "\ncrypto/tls over fitshake TCPDialer (same ClientHello, replayed): completed in %s\n", since(t0))
	printReport(w, raw.(*tlsdial.TCPConn).Report())
	tc.Close()
	return nil
}

func printReport(w io.Writer, r tlsdial.Report) {
	for _, line := range strings.Split(strings.TrimRight(r.String(), "\n"), "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
	mss := "no clamp"
	if r.MSS > 0 {
		mss = fmt.Sprintf("MSS %d", r.MSS)
	}
	fmt.Fprintf(w, "  worked: %s, %d-byte ClientHello\n", mss, r.HelloSize)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Microsecond) }

// serve answers every connection with a line, so handshakes complete.
func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if tc, ok := c.(*tls.Conn); ok && tc.Handshake() == nil {
				io.WriteString(tc, "hello\n")
				io.Copy(io.Discard, tc)
			}
		}()
	}
}

// firstWrite records the size of the first write: the ClientHello record.
type firstWrite struct {
	net.Conn
	n atomic.Int64
}

func (f *firstWrite) Write(b []byte) (int, error) {
	f.n.CompareAndSwap(0, int64(len(b)))
	return f.Conn.Write(b)
}
