package tlsdial_test

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/testcert"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/stretchr/testify/require"
)

const serverName = "server.fitshake.test"

type testServer struct {
	ca   *testcert.CA
	addr string
	wg   sync.WaitGroup
}

// startServer runs a Go TLS server that completes handshakes and echoes.
// extraNames pads its certificate to make its first flight large.
func startServer(t testing.TB, extraNames int) *testServer {
	t.Helper()
	ca, err := testcert.NewCA()
	require.NoError(t, err)
	cert, err := ca.Issue([]string{serverName, "127.0.0.1"}, extraNames)
	require.NoError(t, err)
	ln, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	})
	require.NoError(t, err)
	s := &testServer{ca: ca, addr: ln.Addr().String()}
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				io.Copy(c, c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *testServer) config() *tls.Config {
	return &tls.Config{RootCAs: s.ca.Pool, ServerName: serverName, NextProtos: []string{"h2", "http/1.1"}}
}

// blackHole puts a simulated path MTU in front of addr.
func blackHole(t *testing.T, addr string, mtu int, dir pmtutest.Direction) string {
	t.Helper()
	p, err := pmtutest.Start(pmtutest.Config{Target: addr, MTU: mtu, Direction: dir})
	if err != nil {
		t.Skipf("black-hole simulator unavailable here: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Addr()
}

// checkLeaks fails the test if goroutines or file descriptors started
// during it are still there shortly after it ends. Register it first so
// its cleanup runs last.
func checkLeaks(t *testing.T) {
	t.Helper()
	g0, f0 := runtime.NumGoroutine(), countFDs()
	t.Cleanup(func() {
		var g, f int
		for range 100 {
			g, f = runtime.NumGoroutine(), countFDs()
			if g <= g0 && f <= f0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		buf := make([]byte, 1<<16)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("leak: goroutines %d → %d, fds %d → %d\n%s", g0, g, f0, f, buf)
	})
}

func countFDs() int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(es)
}
