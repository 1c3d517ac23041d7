package fitgrpc_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fitshake/fitshake/examples/grpc/fitgrpc"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// Service names the test server knows: a name longer than any packet of
// the path (so a unary call's request needs the clamp that the handshake
// found), and one whose status flips every tick (so Watch streams).
var longService = "fitshake." + strings.Repeat("x", 3000)

const tickService = "fitshake.tick"

// serveHealth serves grpc's health service over TLS on ln until ctx ends:
// longService is SERVING, tickService flips every tick. The server allows
// keepalive pings every second, streams or not.
func serveHealth(ctx context.Context, ln net.Listener, cfg *tls.Config, tick time.Duration) error {
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(cfg)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	hs.SetServingStatus(longService, healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(tickService, healthpb.HealthCheckResponse_SERVING)
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		serving := true
		for {
			select {
			case <-ctx.Done():
				srv.Stop()
				return
			case <-t.C:
				serving = !serving
				s := healthpb.HealthCheckResponse_NOT_SERVING
				if serving {
					s = healthpb.HealthCheckResponse_SERVING
				}
				hs.SetServingStatus(tickService, s)
			}
		}
	}()
	err := srv.Serve(ln)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// exercise runs a unary Check with a request larger than a packet, then a
// Watch until it has seen want status changes.
func exercise(ctx context.Context, conn *grpc.ClientConn, want int) error {
	hc := healthpb.NewHealthClient(conn)
	res, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: longService})
	if err != nil {
		return fmt.Errorf("unary Check: %w", err)
	}
	if res.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("unary Check: %v", res.Status)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: tickService})
	if err != nil {
		return fmt.Errorf("Watch: %w", err)
	}
	var last healthpb.HealthCheckResponse_ServingStatus = -1
	for changes := 0; changes < want; {
		m, err := w.Recv()
		if err != nil {
			return fmt.Errorf("Watch after %d changes: %w", changes, err)
		}
		if last >= 0 && m.Status != last {
			changes++
		}
		last = m.Status
	}
	return nil
}

// pings counts the HTTP/2 keepalive pings a client connection sends and
// the acknowledgements it reads: PING frames with grpc's keepalive payload
// (eight zero bytes; its BDP pings carry another).
type pings struct {
	sent, acked atomic.Int64
}

// countingCreds wraps transport credentials so that the connection their
// handshake returns counts pings in its plaintext HTTP/2 frames.
type countingCreds struct {
	credentials.TransportCredentials
	p *pings
}

func (c countingCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		return nil, nil, err
	}
	return &countingConn{
		Conn: conn,
		w:    frameScanner{skip: len("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), ping: func(ack bool) { count(&c.p.sent, !ack) }},
		r:    frameScanner{ping: func(ack bool) { count(&c.p.acked, ack) }},
	}, info, nil
}

func (c countingCreds) Clone() credentials.TransportCredentials {
	return countingCreds{c.TransportCredentials.Clone(), c.p}
}

func count(n *atomic.Int64, yes bool) {
	if yes {
		n.Add(1)
	}
}

type countingConn struct {
	net.Conn
	wmu, rmu sync.Mutex
	w, r     frameScanner
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.wmu.Lock()
	c.w.scan(b[:n])
	c.wmu.Unlock()
	return n, err
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.rmu.Lock()
	c.r.scan(b[:n])
	c.rmu.Unlock()
	return n, err
}

// frameScanner follows an HTTP/2 frame stream and reports keepalive PING
// frames (type 6, payload all zero) with their ACK flag.
type frameScanner struct {
	skip   int    // bytes to pass over first (the client preface)
	hdr    []byte // a partial frame header
	body   int    // bytes of the current frame's payload still to come
	ping   func(ack bool)
	isPing bool
	ack    bool
	pay    []byte
}

func (s *frameScanner) scan(b []byte) {
	for len(b) > 0 {
		switch {
		case s.skip > 0:
			n := min(s.skip, len(b))
			s.skip -= n
			b = b[n:]
		case s.body > 0:
			n := min(s.body, len(b))
			if s.isPing {
				s.pay = append(s.pay, b[:n]...)
			}
			s.body -= n
			b = b[n:]
			if s.body == 0 && s.isPing {
				s.done()
			}
		default:
			n := min(9-len(s.hdr), len(b))
			s.hdr = append(s.hdr, b[:n]...)
			b = b[n:]
			if len(s.hdr) < 9 {
				continue
			}
			h := s.hdr
			s.hdr = s.hdr[:0]
			s.body = int(binary.BigEndian.Uint32(append([]byte{0}, h[:3]...)))
			s.isPing, s.ack, s.pay = h[3] == 6, h[4]&1 != 0, s.pay[:0]
			if s.isPing && s.body == 0 {
				s.done()
			}
		}
	}
}

func (s *frameScanner) done() {
	if bytes.Equal(s.pay, make([]byte, 8)) {
		s.ping(s.ack)
	}
	s.isPing = false
}

// How a test client dials.
const (
	viaTCPDialer = "tcpdialer" // tlsdial.TCPDialer under grpc's TLS credentials
	viaDialer    = "dialer"    // tlsdial.Dialer through fitgrpc.DialOptions
	viaStock     = "stock"     // grpc's own dialer and TLS credentials
)

// dialLog keeps the Report of every dial a client made.
type dialLog struct {
	mu      sync.Mutex
	reports []tlsdial.Report
	errs    []error
}

func (l *dialLog) done(i tlsdial.DoneInfo) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reports = append(l.reports, i.Report)
	l.errs = append(l.errs, i.Err)
}

// snapshot returns the reports and errors so far.
func (l *dialLog) snapshot() ([]tlsdial.Report, []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reports), slices.Clone(l.errs)
}

// newClient makes a gRPC client of addr that dials as via says, with a
// cache of its own, counting keepalive pings in p. kp nil means grpc's
// default (no keepalive pings).
func newClient(addr, via string, cfg *tls.Config, p *pings, kp *keepalive.ClientParameters) (*grpc.ClientConn, *dialLog, error) {
	log := &dialLog{}
	trace := &tlsdial.Trace{Done: log.done}
	var opts []grpc.DialOption
	switch via {
	case viaTCPDialer:
		td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, Trace: trace}
		opts = append(opts,
			grpc.WithTransportCredentials(countingCreds{credentials.NewTLS(cfg), p}),
			grpc.WithContextDialer(td.ContextDialer("tcp")))
	case viaDialer:
		d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}, Trace: trace}
		opts = append(opts,
			grpc.WithContextDialer(fitgrpc.ContextDialer),
			grpc.WithTransportCredentials(countingCreds{fitgrpc.Credentials(d), p}))
	case viaStock:
		opts = append(opts, grpc.WithTransportCredentials(countingCreds{credentials.NewTLS(cfg), p}))
	default:
		return nil, nil, fmt.Errorf("unknown client %q", via)
	}
	if kp != nil {
		opts = append(opts, grpc.WithKeepaliveParams(*kp))
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, opts...)
	return conn, log, err
}
