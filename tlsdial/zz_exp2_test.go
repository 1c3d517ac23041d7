package tlsdial_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"context"
	"crypto/tls"
	"net"

	"github.com/fitshake/fitshake/fingerprint"
	"github.com/fitshake/fitshake/internal/utlsconv"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
)

func tcpDialerOpts(cfg *tls.Config, td *tlsdial.TCPDialer) dialFunc {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		raw, err := td.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c := tls.Client(raw, cfg)
		if err := c.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return c, nil
	}
}

func BenchmarkZZRatio(b *testing.B) {
	srv := startServer(b, 0)
	dials := []dialFunc{
		stockDial(srv.config()),
		tcpDialerOpts(srv.config(), &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}),
		tcpDialerOpts(srv.config(), &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, StallWindow: -1}),
		tcpDialerOpts(srv.config(), &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, TimerOnly: true}),
		fitshakeDial(srv.config(), false),
		func(ctx context.Context, addr string) (net.Conn, error) {
			d := &tlsdial.Dialer{Config: srv.config(), Cache: &pmtu.Cache{}, StallWindow: -1}
			return d.DialContext(ctx, "tcp", addr)
		},
	}
	cfg := srv.config()
	dials = append(dials, func(ctx context.Context, addr string) (net.Conn, error) {
		o := fingerprint.OptionsFrom(cfg, cfg.ServerName)
		h, err := fingerprint.Build(fingerprint.Ladder(false)[0], utlsconv.Config(cfg), o)
		if err != nil {
			return nil, err
		}
		raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		h.Conn.SetUnderlyingConn(raw)
		if err := h.Conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return h.Conn, nil
	})
	names := []string{"stock", "tcp", "tcp-off", "tcp-timer", "dialer", "dialer-off", "bare-utls"}
	lat := make([][]time.Duration, len(dials))
	order := rand.Perm(len(dials))
	for b.Loop() {
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			lat[i] = append(lat[i], handshakeOnce(b, dials[i], srv.addr))
		}
	}
	med := func(i int) float64 {
		s := append([]time.Duration(nil), lat[i]...)
		slices.Sort(s)
		return float64(s[len(s)/2])
	}
	for i := 1; i < len(dials); i++ {
		b.ReportMetric(med(i)/med(0), names[i])
	}
}
