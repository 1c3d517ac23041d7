package tlsdial_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fitshake/fitshake/fingerprint"
	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func echo(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	msg := []byte("ping through the black hole")
	_, err := c.Write(msg)
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, msg, got)
}

func mustMSS(t *testing.T, c net.Conn) int {
	t.Helper()
	mss, err := pmtu.EffectiveMSS(c)
	require.NoError(t, err)
	return mss
}

func TestDialerZeroValue(t *testing.T) {
	// The zero Dialer verifies with the system roots: the test CA fails,
	// proving the config is used as crypto/tls would.
	srv := startServer(t, 0)
	_, err := (&tlsdial.Dialer{}).DialContext(context.Background(), "tcp", srv.addr)
	var uae x509.UnknownAuthorityError
	require.ErrorAs(t, err, &uae)
}

func TestDialerCancelMidStall(t *testing.T) {
	leaktest.Check(t)
	srv := startServer(t, 0)
	addr := blackHole(t, srv.addr, 1400, pmtutest.Both)
	d := &tlsdial.Dialer{Config: srv.config(), Cache: &pmtu.Cache{}, StallWindow: 10 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	t0 := time.Now()
	_, err := d.DialContext(ctx, "tcp", addr)
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(t0), 2*time.Second, "returned long before the stall window")
	var de *tlsdial.DialError
	require.ErrorAs(t, err, &de)
	require.Len(t, de.Report.Attempts, 1)
	assert.Equal(t, tlsdial.OutcomeCanceled, de.Report.Attempts[0].Outcome)
	assert.ErrorIs(t, de.Report.Attempts[0].Err, context.Canceled)
}

func TestDialerNegotiates(t *testing.T) {
	leaktest.Check(t)
	srv := startServer(t, 0)
	d := &tlsdial.Dialer{Config: srv.config(), Cache: &pmtu.Cache{}}
	c, err := d.DialContext(context.Background(), "tcp", blackHole(t, srv.addr, 1400, pmtutest.Both))
	require.NoError(t, err)
	defer c.Close()
	cs := c.(*tlsdial.Conn).ConnectionState()
	assert.Equal(t, "h2", cs.NegotiatedProtocol)
	assert.Equal(t, tls.X25519MLKEM768, cs.CurveID)
	assert.Equal(t, "pq", c.(*tlsdial.Conn).Report().Rung)
}

func TestDialerNeverMutatesConfig(t *testing.T) {
	srv := startServer(t, 0)
	addr := blackHole(t, srv.addr, 1400, pmtutest.Both)
	cfg := &tls.Config{RootCAs: srv.ca.Pool, NextProtos: []string{"h2"}}
	d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// No ServerName: taken from addr's host (an IP, in the certificate).
			c, err := d.DialContext(context.Background(), "tcp", addr)
			if assert.NoError(t, err) {
				c.Close()
			}
		}()
	}
	wg.Wait()
	assert.Empty(t, cfg.ServerName)
	assert.Equal(t, []string{"h2"}, cfg.NextProtos)
	assert.Nil(t, cfg.CurvePreferences)
	assert.Zero(t, cfg.MinVersion)
}

func TestDialerAllowClassical(t *testing.T) {
	leaktest.Check(t)
	srv := startServer(t, 0)
	// A box that reads any first flight over 1000 bytes whole and resets
	// it, however it is segmented, is beyond what a clamp fixes: only a
	// smaller hello passes. Without the classical hello, the dial cannot
	// tell it from a box that refuses every hello: it says what it saw,
	// and offers no weaker hello as the remedy.
	addr, _ := resetProxy(t, srv.addr, 9000, 1000)
	d := &tlsdial.Dialer{Config: srv.config(), Cache: &pmtu.Cache{}}
	_, err := d.DialContext(context.Background(), "tcp", addr)
	require.ErrorIs(t, err, syscall.ECONNRESET, "without opt-in the post-quantum share is never dropped")
	require.ErrorIs(t, err, tlsdial.ErrHelloRejected)
	var he *tlsdial.HelloError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, pmtu.ClassRefused, he.Diagnosis.Class)
	assert.NotContains(t, err.Error(), "AllowClassical")
	var de *tlsdial.DialError
	require.ErrorAs(t, err, &de)
	for _, a := range de.Report.Attempts {
		assert.NotEqual(t, "classical", a.Rung)
	}
	assert.Contains(t, rungsOf(de.Report), fingerprint.NameCompact, "%s", de.Report)

	d.AllowClassical = true
	c, err := d.DialContext(context.Background(), "tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	r := c.(*tlsdial.Conn).Report()
	assert.True(t, r.SecurityReduced, "%s", r)
	assert.Equal(t, "classical", r.Rung)
	assert.Less(t, r.HelloSize, 1000)
	assert.Equal(t, []string{"pq", "pq-compact", "classical"}, rungsOf(r),
		"refused whole, in one segment: the compact hello, then the classical one, no clamp")
	echo(t, c)
}

// rungsOf lists the rungs of r's attempts, in order.
func rungsOf(r tlsdial.Report) []string {
	var out []string
	for _, a := range r.Attempts {
		out = append(out, a.Rung)
	}
	return out
}

func TestDialerBadInput(t *testing.T) {
	_, err := (&tlsdial.Dialer{}).DialContext(context.Background(), "udp", "127.0.0.1:443")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unsupported network")
	_, err = (&tlsdial.Dialer{}).DialContext(context.Background(), "tcp", ":443")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ServerName")
}

// copyConn copies by hand: io.Copy between TCP conns splices through
// pooled pipes that outlive the test and look like leaked descriptors.
func copyConn(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// The Dialer's full hello is crypto/tls's, exactly as Ladder sizes it, with
// its post-quantum share; where the process turned that share off
// (GODEBUG tlsmlkem=0), utls sends the full hello instead, still
// post-quantum, and Ladder says so.
func TestDialerFullHelloIsCryptoTLSs(t *testing.T) {
	leaktest.Check(t)
	srv := startServer(t, 0)
	d := &tlsdial.Dialer{Config: srv.config(), Cache: &pmtu.Cache{}}
	dial := func() (tlsdial.Report, []tlsdial.Step) {
		t.Helper()
		steps, err := d.Ladder(srv.addr)
		require.NoError(t, err)
		c, err := d.DialContext(context.Background(), "tcp", srv.addr)
		require.NoError(t, err)
		defer c.Close()
		echo(t, c)
		return c.(*tlsdial.Conn).Report(), steps
	}
	cfg, ok := fingerprint.Ladder(false)[0].StdConfig(srv.config(), fingerprint.OptionsFrom(srv.config(), ""))
	require.True(t, ok)
	std, err := fingerprint.StdHello(cfg)
	require.NoError(t, err)
	pq, err := fingerprint.Ladder(false)[0].RecordSize(fingerprint.OptionsFrom(srv.config(), ""))
	require.NoError(t, err)
	require.NotEqual(t, len(std), pq, "the two hellos differ in size, or this test tells nothing")

	r, steps := dial()
	assert.Equal(t, len(std), r.HelloSize, "crypto/tls's hello: %s", r)
	assert.Equal(t, len(std), steps[0].HelloSize)
	assert.Equal(t, fingerprint.NamePostQuantum, r.Rung)

	t.Setenv("GODEBUG", "tlsmlkem=0")
	r, steps = dial()
	assert.Equal(t, pq, r.HelloSize, "utls's full hello, post-quantum: %s", r)
	assert.Equal(t, pq, steps[0].HelloSize)
	assert.Len(t, r.Attempts, 1, "on the same connection: %s", r)
}
