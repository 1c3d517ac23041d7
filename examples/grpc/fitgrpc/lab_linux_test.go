package fitgrpc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { lab.Main(m) }

// Names of this package's functions in the lab's re-executed binaries.
const (
	labServer = "fitgrpc-health"
	labClient = "fitgrpc-client"
)

type labServerArgs struct {
	CertFile, KeyFile string
	Addrs             []string
}

type labClientArgs struct {
	Addr, CAFile string
	Via          string
	Timeout      time.Duration // bounds the first calls
	Idle         time.Duration // then idle with keepalive pings, and call again; 0: no keepalive
}

type labClientResult struct {
	OK                    bool
	Err                   string
	Code                  string        // the gRPC status code of Err
	Took                  time.Duration // the first unary call (dial included) and the stream
	Dials                 int           // dials the client made, all its calls together
	Attempts              int           // connections the first dial opened
	MSS                   int           // the first dial's clamp
	Handshake             time.Duration // the first dial's duration (Report.Duration)
	PingsSent, PingsAcked int64
}

func init() {
	lab.RegisterServer(labServer, func(ctx context.Context, raw json.RawMessage, ready func(any)) error {
		var a labServerArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return err
		}
		cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
		if err != nil {
			return err
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
		errc := make(chan error, len(a.Addrs))
		for _, addr := range a.Addrs {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			go func() { errc <- serveHealth(ctx, ln, cfg, 50*time.Millisecond) }()
		}
		ready(a.Addrs)
		var first error
		for range a.Addrs {
			if err := <-errc; err != nil && first == nil {
				first = err
			}
		}
		return first
	})
	lab.RegisterClient(labClient, runLabClient)
}

// runLabClient dials, calls (unary, then a stream of three changes), and,
// if asked, idles with keepalive pings and calls again.
func runLabClient(ctx context.Context, raw json.RawMessage) (any, error) {
	var a labClientArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(a.CAFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, errors.New("no CA in " + a.CAFile)
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: lab.ServerName}
	var kp *keepalive.ClientParameters
	if a.Idle > 0 {
		kp = &keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 2 * time.Second, PermitWithoutStream: true}
	}
	var pg pings
	conn, log, err := newClient(a.Addr, a.Via, cfg, &pg, kp)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var res labClientResult
	cctx, cancel := context.WithTimeout(ctx, a.Timeout)
	start := time.Now()
	err = exercise(cctx, conn, 3)
	res.Took = time.Since(start)
	cancel()
	if err == nil && a.Idle > 0 {
		time.Sleep(a.Idle)
		cctx, cancel := context.WithTimeout(ctx, a.Timeout)
		err = exercise(cctx, conn, 1)
		cancel()
	}
	res.OK = err == nil
	if err != nil {
		res.Err, res.Code = err.Error(), status.Code(err).String()
	}
	reports, _ := log.snapshot()
	res.Dials = len(reports)
	if len(reports) > 0 {
		r := reports[0]
		res.Attempts, res.MSS, res.Handshake = len(r.Attempts), r.MSS, r.Duration
	}
	res.PingsSent, res.PingsAcked = pg.sent.Load(), pg.acked.Load()
	return res, nil
}

// TestLabGRPC runs grpc-go through the lab's 1400-byte black hole (no
// ICMP), each direction, IPv4 and IPv6, against a Go gRPC server with the
// long RSA chain: over TCPDialer and over the Dialer (fitgrpc), a unary
// call, a stream, 12 s of idle with keepalive pings, and calls again, on
// one dial; stock grpc fails at its 5 s deadline.
func TestLabGRPC(t *testing.T) {
	for _, dir := range []lab.Direction{lab.Upstream, lab.Downstream, lab.Both} {
		t.Run(string(dir), func(t *testing.T) {
			l := lab.New(t, lab.Config{Scenario: lab.Blackhole, Direction: dir})
			pki, err := l.PKI()
			require.NoError(t, err)
			cert, key := pki.Files(lab.Long)
			port := l.NextPort()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			p, _, err := l.StartServer(ctx, labServer, labServerArgs{
				CertFile: cert, KeyFile: key,
				Addrs: []string{l.Addr(lab.IPv4, port), l.Addr(lab.IPv6, port)},
			})
			require.NoError(t, err)
			defer p.Stop()

			var wg sync.WaitGroup
			for _, f := range lab.Families() {
				for _, via := range []string{viaTCPDialer, viaDialer, viaStock} {
					wg.Go(func() { labCase(t, ctx, l, f, port, pki.CAFile, via) })
				}
			}
			wg.Wait()
		})
	}
}

func labCase(t *testing.T, ctx context.Context, l *lab.Lab, f lab.Family, port int, caFile, via string) {
	const stockBound = 5 * time.Second
	args := labClientArgs{Addr: l.Addr(f, port), CAFile: caFile, Via: via, Timeout: 20 * time.Second, Idle: 12500 * time.Millisecond}
	if via == viaStock {
		args.Timeout, args.Idle = stockBound, 0
	}
	raw, err := l.RunClient(ctx, labClient, args)
	if !assert.NoError(t, err, "%s %s", f, via) {
		return
	}
	var r labClientResult
	require.NoError(t, json.Unmarshal(raw, &r))
	name := fmt.Sprintf("%s %s %s", l.Config().Direction, f, via)
	if via == viaStock {
		t.Logf("%s: ok=%t after %v: %s (%s)", name, r.OK, r.Took.Round(time.Millisecond), r.Code, r.Err)
		assert.False(t, r.OK, "%s: stock grpc went through the black hole", name)
		assert.Equal(t, "DeadlineExceeded", r.Code, name)
		assert.Less(t, r.Took, stockBound+2*time.Second, name)
		return
	}
	t.Logf("%s: ok=%t: handshake %v (%d connections, MSS %d), unary + stream %v; after %v idle: %d keepalive pings, %d acked; %d dial(s)",
		name, r.OK, r.Handshake.Round(time.Millisecond), r.Attempts, r.MSS, r.Took.Round(time.Millisecond), args.Idle, r.PingsSent, r.PingsAcked, r.Dials)
	assert.True(t, r.OK, "%s: %s", name, r.Err)
	assert.Equal(t, 1, r.Dials, "%s: the connection survived", name)
	assert.Equal(t, l.MaxMSS(f), r.MSS, name)
	assert.GreaterOrEqual(t, r.PingsSent, int64(1), name)
	assert.GreaterOrEqual(t, r.PingsAcked, int64(1), name)
	assert.Less(t, r.Took, 5*time.Second, name)
}
