package pmtutest_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fitshake/fitshake/diagpage"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
)

// rawGet sends a GET for target to addr on a connection from d and returns
// the whole response, or the error that ended it (within timeout).
func rawGet(t *testing.T, d *net.Dialer, addr, target string, timeout time.Duration) (string, error) {
	t.Helper()
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	_, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, addr)
	require.NoError(t, err)
	b, err := io.ReadAll(c)
	return string(b), err
}

// The diagnostic page writes its page 480 bytes at a time, each write once
// the previous one has left: through a real black hole every one is a
// small packet. The proxy reads several at once and must still pass them,
// to a stock client and a clamped one; a downstream probe larger than the
// path is still lost.
func TestDiagPageThroughProxy(t *testing.T) {
	srv := httptest.NewServer(&diagpage.Handler{})
	t.Cleanup(srv.Close)
	p := startProxy(t, pmtutest.Config{Target: srv.Listener.Addr().String(), MTU: 1400})

	for _, tt := range []struct {
		name string
		d    *net.Dialer
	}{{"stock", new(net.Dialer)}, {"clamped", dialer(t, 0, 1400)}} {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := rawGet(t, tt.d, p.Addr(), "/", 10*time.Second)
			require.NoError(t, err)
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, 200, resp.StatusCode)
			assert.Greater(t, len(body), 4*1348, "a page of several full-size packets")
			assert.Contains(t, string(body), "</html>")

			_, err = rawGet(t, tt.d, p.Addr(), "/down?n=0123456789ab&s=1400", 10*time.Second)
			assert.NoError(t, err, "a 1400-byte probe fits the path")
		})
	}
	before := p.Stats().DownDropped
	_, err := rawGet(t, new(net.Dialer), p.Addr(), "/down?n=0123456789ab&s=1500", hangTimeout)
	assertHang(t, err)
	assert.Greater(t, p.Stats().DownDropped, before)
	assert.Zero(t, p.Stats().UpDropped)
}

// An HTTP/2 server that writes its response in small pieces (a frame, and
// a flush, each) works through the proxy for a clamped client, and so does
// one large write. A stock client (with a hello of one small packet,
// X25519 only) loses the large write: it is cut into full-size segments.
// (A stock client's small pieces may pass or not: the HTTP/2 server merges
// the frames queued while it writes into one write, as it would on a real
// path.)
func TestHTTP2SmallWritesThroughProxy(t *testing.T) {
	const pieces, piece = 40, 400
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/large" {
			w.Write(make([]byte, 8000))
			return
		}
		for range pieces {
			w.Write([]byte(strings.Repeat("x", piece)))
			w.(http.Flusher).Flush()
		}
	}))
	serverConf, clientConf := certs(t, 0)
	srv.TLS = serverConf
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p := startProxy(t, pmtutest.Config{Target: srv.Listener.Addr().String(), MTU: 1400})

	get := func(d *net.Dialer, path string) (*http.Response, []byte, error) {
		conf := clientConf.Clone()
		conf.CurvePreferences = []tls.CurveID{tls.X25519} // a hello of one small packet
		tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: conf, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", "https://"+p.Addr()+path, nil)
		require.NoError(t, err)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	resp, body, err := get(dialer(t, 0, 1400), "/small")
	require.NoError(t, err, "clamped")
	assert.Equal(t, "HTTP/2.0", resp.Proto)
	assert.Equal(t, pieces*piece, len(body))

	resp, body, err = get(dialer(t, 0, 1400), "/large")
	require.NoError(t, err, "clamped")
	assert.Equal(t, "HTTP/2.0", resp.Proto)
	assert.Len(t, body, 8000)

	before := p.Stats().DownDropped
	_, _, err = get(new(net.Dialer), "/large")
	assert.ErrorIs(t, err, context.DeadlineExceeded, "8000 bytes in one write got through to a stock client")
	assert.Greater(t, p.Stats().DownDropped, before)
}

// A server writes ten small pieces, then one large write, then closes. A
// stock client gets the small pieces (however many the proxy reads at
// once) and then nothing: the large write leaves as full-size segments. A
// clamped client gets everything and the end of the stream.
func TestSmallWritesPassLargeDropped(t *testing.T) {
	const small, pieces, large = 480, 10, 4000
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for range pieces {
					c.Write(make([]byte, small))
					time.Sleep(5 * time.Millisecond)
				}
				c.Write(make([]byte, large))
				io.Copy(io.Discard, c) // until the client goes
			}()
		}
	}()
	p := startProxy(t, pmtutest.Config{Target: ln.Addr().String(), MTU: 1400})

	read := func(d *net.Dialer) (int, error) {
		c, err := d.Dial("tcp", p.Addr())
		require.NoError(t, err)
		defer c.Close()
		c.SetDeadline(time.Now().Add(hangTimeout))
		n, err := io.Copy(io.Discard, io.LimitReader(c, small*pieces+large))
		return int(n), err
	}
	n, err := read(new(net.Dialer))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "stock client")
	t.Logf("stock client: %d bytes", n)
	assert.LessOrEqual(t, n, small*pieces)
	assert.GreaterOrEqual(t, n, small*pieces/2, "small pieces dropped")
	assert.Zero(t, n%small, "part of a piece")
	assert.Positive(t, p.Stats().DownDropped)

	n, err = read(dialer(t, 0, 1400))
	require.NoError(t, err)
	assert.Equal(t, small*pieces+large, n, "clamped client")
}
