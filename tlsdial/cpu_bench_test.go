//go:build unix

package tlsdial_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
)

// BenchmarkDialCPU measures the client's CPU time per dial with 1, 100 and
// 1000 dials at once to a loopback server that answers each ClientHello
// after 100 ms, so that every dial waits, polling TCP_INFO, for as long as
// a distant server would keep it waiting. The server runs in a process of
// its own (this test binary again, TestHelperSlowServer), so that
// getrusage of this process counts the clients alone. Each iteration runs
// a round per client in turn (crypto/tls, Dialer, TCPDialer under
// crypto/tls, and a TimerOnly Dialer, which reads no TCP_INFO; fewer than
// 20 dials at once repeat the round up to 20 dials), each with a fresh
// Cache (a fresh process's dials), and reports each one's CPU per dial,
// its p99 latency and TCP_INFO reads per dial, and the CPU fitshake adds
// to crypto/tls's:
//
//	go test -run '^$' -bench DialCPU -benchtime 5x -count 3 ./tlsdial/
func BenchmarkDialCPU(b *testing.B) {
	addr, cfg := slowServerProcess(b, 100*time.Millisecond)
	clients := []struct {
		name string
		dial func() dialFunc // one per round: a fresh process's dialer
	}{
		{"crypto-tls", func() dialFunc { return stockDial(cfg) }},
		{"Dialer", func() dialFunc {
			d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}}
			return func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
		}},
		{"TCPDialer", func() dialFunc { return tcpDialerDial(cfg, false) }},
		{"DialerTimerOnly", func() dialFunc { return fitshakeDial(cfg, true) }},
	}
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("dials=%d", n), func(b *testing.B) {
			rounds := max(1, 20/n)
			cpu := make([]time.Duration, len(clients))
			reads := make([]int64, len(clients))
			lat := make([][]time.Duration, len(clients))
			dials := 0
			for b.Loop() {
				for i, c := range clients {
					for range rounds {
						d := c.dial()
						t0, r0 := cpuTime(b), tlsdial.PollReads()
						lat[i] = append(lat[i], round(b, d, addr, n)...)
						cpu[i] += cpuTime(b) - t0
						reads[i] += tlsdial.PollReads() - r0
					}
				}
				dials += rounds * n
			}
			per := func(i int) float64 { return float64(cpu[i].Microseconds()) / float64(dials) }
			for i, c := range clients {
				s := slices.Clone(lat[i])
				slices.Sort(s)
				b.ReportMetric(per(i), c.name+"-cpu-us/dial")
				b.ReportMetric(float64(s[min(len(s)-1, int(0.99*float64(len(s))))].Microseconds())/1000, c.name+"-p99-ms")
				if i > 0 {
					b.ReportMetric(float64(reads[i])/float64(dials), c.name+"-polls/dial")
				}
			}
			b.ReportMetric(per(1)-per(0), "Dialer-extra-cpu-us/dial")
			b.ReportMetric(per(2)-per(0), "TCPDialer-extra-cpu-us/dial")
		})
	}
}

// cpuTime returns the user and system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const envSlowServer = "FITSHAKE_SLOW_SERVER" // the helper's delay

// slowServerProcess starts TestHelperSlowServer in a child process, holding
// every ClientHello for delay, and returns its address and a client
// config that trusts it.
func slowServerProcess(b *testing.B, delay time.Duration) (string, *tls.Config) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSlowServer$")
	cmd.Env = append(os.Environ(), envSlowServer+"="+delay.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close() // the helper's cue to exit
		cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "slow-server" {
			continue
		}
		der, err := base64.StdEncoding.DecodeString(f[2])
		if err != nil {
			b.Fatal(err)
		}
		ca, err := x509.ParseCertificate(der)
		if err != nil {
			b.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		go io.Copy(io.Discard, stdout)
		return f[1], &tls.Config{RootCAs: pool, ServerName: serverName}
	}
	b.Fatalf("slow server helper: no address (%v)", sc.Err())
	return "", nil
}

// TestHelperSlowServer is not a test: it is BenchmarkDialCPU's server,
// run in a process of its own. It serves until its stdin closes.
func TestHelperSlowServer(t *testing.T) {
	v := os.Getenv(envSlowServer)
	if v == "" {
		t.Skip("the server process of BenchmarkDialCPU")
	}
	delay, err := time.ParseDuration(v)
	if err != nil {
		t.Fatal(err)
	}
	scfg, ca := slowConfig(t, delay)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var wg sync.WaitGroup
		for {
			c, err := ln.Accept()
			if err != nil {
				wg.Wait()
				return
			}
			wg.Go(func() {
				defer c.Close()
				tc := tls.Server(c, scfg)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() == nil {
					tc.Read(make([]byte, 1))
				}
			})
		}
	}()
	fmt.Printf("slow-server %s %s\n", ln.Addr(), base64.StdEncoding.EncodeToString(ca.Cert.Raw))
	io.Copy(io.Discard, os.Stdin)
}
