package tlsdial_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/fitshake/fitshake/internal/testcert"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	sslRequest    = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f} // 80877103
	gssencRequest = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30} // 80877104
)

// pgServer is a fake PostgreSQL server: it answers SSLRequest and
// GSSENCRequest, serves TLS after 'S', and answers the simple query
// "SELECT 1" with 1 after a trust login.
type pgServer struct {
	addr   string
	ca     *testcert.CA
	tls    *tls.Config
	conns  atomic.Int32 // connections accepted, in order
	gssenc atomic.Int32 // GSSENCRequests seen
	plain  atomic.Int32 // sessions served without TLS
	// answer is the answer to the SSLRequest on connection n (from 1);
	// 0 answers nothing. Nil answers 'S'.
	answer func(n int32) byte
}

// startPG starts a pgServer whose certificate is padded with extraNames,
// so that its flight is several segments.
func startPG(t *testing.T, extraNames int, answer func(n int32) byte) *pgServer {
	t.Helper()
	ca, err := testcert.NewCA()
	require.NoError(t, err)
	cert, err := ca.Issue([]string{serverName, "127.0.0.1", "::1"}, extraNames)
	require.NoError(t, err)
	s := &pgServer{ca: ca, answer: answer, tls: &tls.Config{Certificates: []tls.Certificate{cert}}}
	ln := testcert.Listen(t)
	s.addr = ln.Addr().String()
	testcert.Serve(t, ln, func(c net.Conn, _ func(net.Conn)) { s.serve(c) })
	return s
}

func (s *pgServer) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: s.ca.Pool, ServerName: serverName}
}

func (s *pgServer) serve(c net.Conn) {
	n := s.conns.Add(1)
	be := pgproto3.NewBackend(c, c)
	secure := false
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.GSSEncRequest:
			s.gssenc.Add(1)
			c.Write([]byte("N"))
		case *pgproto3.SSLRequest:
			a := byte('S')
			if s.answer != nil {
				a = s.answer(n)
			}
			if a == 0 {
				io.Copy(io.Discard, c) // silent until the client leaves
				return
			}
			c.Write([]byte{a})
			if a == 'S' {
				tc := tls.Server(c, s.tls)
				be, secure = pgproto3.NewBackend(tc, tc), true
			}
		case *pgproto3.StartupMessage:
			if !secure {
				s.plain.Add(1)
			}
			session(be)
			return
		default:
			return
		}
	}
}

// session logs the client in and answers simple queries with one int4
// column holding 1.
func session(be *pgproto3.Backend) {
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
	be.Send(&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"})
	be.Send(&pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "on"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 2}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.Query); !ok {
			return // Terminate, or what this fake does not speak
		}
		be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{
			Name: []byte("?column?"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1,
		}}})
		be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("1")}})
		be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		if be.Flush() != nil {
			return
		}
	}
}

// reports collects the Report of every dial a dialer makes.
type reports struct {
	mu sync.Mutex
	rs []tlsdial.Report
}

func (r *reports) trace() *tlsdial.Trace {
	return &tlsdial.Trace{Done: func(i tlsdial.DoneInfo) {
		r.mu.Lock()
		r.rs = append(r.rs, i.Report)
		r.mu.Unlock()
	}}
}

// wait returns the first n reports, waiting a little for the Done hooks.
func (r *reports) wait(t *testing.T, n int) []tlsdial.Report {
	t.Helper()
	for range 200 {
		r.mu.Lock()
		rs := append([]tlsdial.Report(nil), r.rs...)
		r.mu.Unlock()
		if len(rs) >= n {
			return rs
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.FailNow(t, "dials not done", "want %d", n)
	return nil
}

// pgxSelect1 connects with pgconn over dial and runs SELECT 1.
func pgxSelect1(ctx context.Context, addr, sslmode string, tc *tls.Config, dial pgconn.DialFunc) (string, error) {
	host, port, _ := net.SplitHostPort(addr)
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%s user=u database=d sslmode=%s", host, port, sslmode))
	if err != nil {
		return "", err
	}
	if tc != nil {
		cfg.TLSConfig = tc
	}
	cfg.DialFunc = dial
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer pc.Close(context.Background())
	rs, err := pc.Exec(ctx, "SELECT 1").ReadAll()
	if err != nil {
		return "", err
	}
	return string(rs[0].Rows[0][0]), nil
}

// pqSelect1 connects with lib/pq over d and runs SELECT 1.
func pqSelect1(ctx context.Context, addr, sslmode string, d pq.Dialer) (int, error) {
	host, port, _ := net.SplitHostPort(addr)
	c, err := pq.NewConnector(fmt.Sprintf("host=%s port=%s user=u dbname=d sslmode=%s", host, port, sslmode))
	if err != nil {
		return 0, err
	}
	c.Dialer(d)
	db := sql.OpenDB(c)
	defer db.Close()
	var one int
	err = db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	return one, err
}

// pqTLS registers the server's client config with lib/pq under a name of
// its own and returns the sslmode that selects it.
func pqTLS(t *testing.T, s *pgServer) string {
	name := strings.NewReplacer("/", "-", "#", "-").Replace(t.Name())
	require.NoError(t, pq.RegisterTLSConfig(name, s.clientTLS()))
	return "pqgo-" + name
}

// TestTCPDialerPostgres runs pgx and lib/pq through black holes over a
// TCPDialer with no option: the SSLRequest passes through, the ClientHello
// after it is watched, and each raced attempt replays both.
func TestTCPDialerPostgres(t *testing.T) {
	leaktest.Check(t)
	for _, dir := range []pmtutest.Direction{pmtutest.Upstream, pmtutest.Downstream, pmtutest.Both} {
		for _, client := range []string{"pgx", "lib/pq"} {
			t.Run(fmt.Sprintf("%s/%s", client, dir), func(t *testing.T) {
				srv := startPG(t, 150, nil)
				addr := blackHole(t, srv.addr, 1400, dir)
				rec := &reports{}
				td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, Trace: rec.trace()}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				t0 := time.Now()
				var got string
				var err error
				if client == "pgx" {
					got, err = pgxSelect1(ctx, addr, "verify-full", srv.clientTLS(), td.DialContext)
				} else {
					var one int
					one, err = pqSelect1(ctx, addr, pqTLS(t, srv), td)
					got = fmt.Sprint(one)
				}
				took := time.Since(t0)
				require.NoError(t, err)
				assert.Equal(t, "1", got)
				r := rec.wait(t, 1)[0]
				t.Logf("%s in %s:\n%s", client, took.Round(time.Millisecond), r)
				assert.Equal(t, tlsdial.Protected, r.Protection, "%s", r)
				assert.Equal(t, "PostgreSQL SSLRequest", r.Prelude)
				assert.Equal(t, 1360, r.MSS, "%s", r)
				assert.GreaterOrEqual(t, len(r.Attempts), 2, "%s", r)
				assert.Equal(t, tlsdial.OutcomeStall, r.Attempts[0].Outcome, "%s", r)
				assert.Equal(t, int32(len(r.Attempts)), srv.conns.Load(), "one server connection per attempt")
				assert.Less(t, took, 8*time.Second)
				assert.Contains(t, r.String(), "(after PostgreSQL SSLRequest)")
			})
		}
	}
}

// TestTCPDialerPostgresDeclined: a server without TLS answers 'N'. The
// driver sees it, exactly as over a net.Dialer, over as many connections,
// and the Report says the connection was not protected.
func TestTCPDialerPostgresDeclined(t *testing.T) {
	leaktest.Check(t)
	for _, mode := range []string{"prefer", "disable"} {
		t.Run(mode, func(t *testing.T) {
			srv := startPG(t, 0, func(int32) byte { return 'N' })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			stock, stockErr := pgxSelect1(ctx, srv.addr, mode, nil, (&net.Dialer{}).DialContext)
			stockConns := srv.conns.Swap(0)

			rec := &reports{}
			td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, Trace: rec.trace()}
			got, err := pgxSelect1(ctx, srv.addr, mode, nil, td.DialContext)
			require.NoError(t, stockErr)
			require.NoError(t, err)
			assert.Equal(t, stock, got)
			assert.Equal(t, stockConns, srv.conns.Load(), "as many connections as a net.Dialer")
			assert.Equal(t, int32(2), srv.plain.Load(), "both sessions were plain")

			rs := rec.wait(t, int(stockConns))
			want := map[string][]tlsdial.Protection{
				// prefer: SSLRequest refused, then a plain connection.
				"prefer":  {tlsdial.UnprotectedDeclined, tlsdial.UnprotectedNotHello},
				"disable": {tlsdial.UnprotectedNotHello},
			}[mode]
			require.Len(t, rs, len(want))
			for i, r := range rs {
				assert.Equal(t, want[i], r.Protection, "%s", r)
				assert.Len(t, r.Attempts, 1)
				assert.Contains(t, r.String(), want[i].String()+"\n")
			}
			if mode == "prefer" {
				assert.Equal(t, "PostgreSQL SSLRequest", rs[0].Prelude)
				assert.Contains(t, rs[0].String(), "not protected: the server declined TLS")
			}
		})
	}
}

// TestTCPDialerPostgresGSSENCThenSSL: a GSSENCRequest refused with 'N',
// then an SSLRequest on the same connection, then TLS; every raced attempt
// replays both exchanges.
func TestTCPDialerPostgresGSSENCThenSSL(t *testing.T) {
	leaktest.Check(t)
	srv := startPG(t, 0, nil)
	addr := blackHole(t, srv.addr, 1400, pmtutest.Both)
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	c, err := td.DialContext(context.Background(), "tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for _, x := range []struct {
		req  []byte
		want string
	}{{gssencRequest, "N"}, {sslRequest, "S"}} {
		_, err := c.Write(x.req)
		require.NoError(t, err)
		b := make([]byte, 16)
		n, err := c.Read(b)
		require.NoError(t, err)
		require.Equal(t, x.want, string(b[:n]), "the answer alone, nothing after it")
	}
	tc := tls.Client(c, srv.clientTLS())
	require.NoError(t, tc.Handshake())
	r := c.(*tlsdial.TCPConn).Report()
	t.Logf("\n%s", r)
	assert.Equal(t, tlsdial.Protected, r.Protection)
	assert.Equal(t, "PostgreSQL GSSENCRequest, PostgreSQL SSLRequest", r.Prelude)
	assert.Equal(t, 1360, r.MSS, "%s", r)
	assert.GreaterOrEqual(t, len(r.Attempts), 2)
	assert.Equal(t, srv.conns.Load(), srv.gssenc.Load(), "every connection exchanged the GSSENCRequest first")
}

// TestTCPDialerPostgresAnswerChanges: the first connection is answered
// 'S', the later ones 'N' (a pool behind one address, half of it without
// TLS). A raced attempt never replays the hello after a different answer:
// it ends with a *PreludeError, and the stack's deadline ends the dial.
func TestTCPDialerPostgresAnswerChanges(t *testing.T) {
	leaktest.Check(t)
	srv := startPG(t, 0, func(n int32) byte { return "SN"[min(n-1, 1)] })
	addr := blackHole(t, srv.addr, 1400, pmtutest.Both)
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	c, err := td.DialContext(context.Background(), "tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	_, err = c.Write(sslRequest)
	require.NoError(t, err)
	b := make([]byte, 1)
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	require.Equal(t, "S", string(b))
	t0 := time.Now()
	err = tls.Client(c, srv.clientTLS()).Handshake()
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Less(t, time.Since(t0), 5*time.Second)
	r := c.(*tlsdial.TCPConn).Report()
	t.Logf("\n%s", r)
	require.GreaterOrEqual(t, len(r.Attempts), 2, "%s", r)
	var pe *tlsdial.PreludeError
	require.ErrorAs(t, r.Attempts[1].Err, &pe, "%s", r)
	assert.Equal(t, tlsdial.OutcomeError, r.Attempts[1].Outcome)
	assert.Equal(t, "PostgreSQL SSLRequest", pe.Prelude)
	assert.Equal(t, []byte("S"), pe.Want)
	assert.Equal(t, []byte("N"), pe.Got)
	assert.Equal(t, 2, pe.ID)
	assert.Equal(t, 1360, r.Attempts[1].MSS, "the report shows the clamp of the attempt that got another answer")
}

// TestTCPDialerPostgresSilent: a server that never answers the prelude.
// The stack's deadline (pgx's context) ends the wait, over one connection.
func TestTCPDialerPostgresSilent(t *testing.T) {
	leaktest.Check(t)
	srv := startPG(t, 0, func(int32) byte { return 0 })
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := pgxSelect1(ctx, srv.addr, "require", srv.clientTLS(), td.DialContext)
	took := time.Since(t0)
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(errors.Unwrap(err)) || strings.Contains(err.Error(), "timeout"), "%v", err)
	assert.Less(t, took, 3*time.Second)
	assert.Equal(t, int32(1), srv.conns.Load())

	// By hand: the read deadline bounds the Read of the answer.
	c, err := td.Dial("tcp", srv.addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write(sslRequest)
	require.NoError(t, err)
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
}

// TestTCPDialerPostgresCloseAndCancel: Close during attempt 1's prelude,
// and during a raced attempt's replay of it (the server answers only the
// first connection), ends everything the dial started; so does canceling
// pgx's context during the prelude.
func TestTCPDialerPostgresCloseAndCancel(t *testing.T) {
	leaktest.Check(t)
	t.Run("close/first", func(t *testing.T) {
		srv := startPG(t, 0, func(int32) byte { return 0 })
		c, err := (&tlsdial.TCPDialer{Cache: &pmtu.Cache{}}).Dial("tcp", srv.addr)
		require.NoError(t, err)
		_, err = c.Write(sslRequest)
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { _, err := c.Read(make([]byte, 1)); done <- err }()
		time.Sleep(50 * time.Millisecond)
		require.NoError(t, c.Close())
		select {
		case err := <-done:
			assert.ErrorIs(t, err, net.ErrClosed)
		case <-time.After(2 * time.Second):
			t.Fatal("Read still blocked after Close")
		}
	})
	t.Run("close/replay", func(t *testing.T) {
		srv := startPG(t, 0, func(n int32) byte { return "S\x00"[min(n-1, 1)] })
		addr := blackHole(t, srv.addr, 1400, pmtutest.Both)
		c, err := (&tlsdial.TCPDialer{Cache: &pmtu.Cache{}}).Dial("tcp", addr)
		require.NoError(t, err)
		_, err = c.Write(sslRequest)
		require.NoError(t, err)
		_, err = io.ReadFull(c, make([]byte, 1))
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- tls.Client(c, srv.clientTLS()).Handshake() }()
		require.Eventually(t, func() bool { return srv.conns.Load() >= 2 }, 5*time.Second, 5*time.Millisecond,
			"a raced attempt replays the prelude")
		time.Sleep(20 * time.Millisecond) // it waits for the answer
		require.NoError(t, c.Close())
		select {
		case err := <-done:
			assert.Error(t, err)
		case <-time.After(2 * time.Second):
			t.Fatal("handshake still blocked after Close")
		}
		r := c.(*tlsdial.TCPConn).Report()
		t.Logf("\n%s", r)
		require.GreaterOrEqual(t, len(r.Attempts), 2)
		assert.Equal(t, tlsdial.OutcomeCanceled, r.Attempts[1].Outcome, "%s", r)
	})
	t.Run("cancel", func(t *testing.T) {
		srv := startPG(t, 0, func(int32) byte { return 0 })
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		t0 := time.Now()
		_, err := pgxSelect1(ctx, srv.addr, "require", srv.clientTLS(), (&tlsdial.TCPDialer{Cache: &pmtu.Cache{}}).DialContext)
		require.Error(t, err)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Less(t, time.Since(t0), 2*time.Second)
	})
}

// TestTCPDialerUnprotected: a connection passed through unwatched says
// why in its Report, its String and a Logger line (but for a StallWindow
// turned off on purpose).
func TestTCPDialerUnprotected(t *testing.T) {
	leaktest.Check(t)
	srv := startPG(t, 0, nil)
	greeter := testcert.Listen(t)
	testcert.Serve(t, greeter, func(c net.Conn, _ func(net.Conn)) {
		c.Write([]byte("220 smtp.example ESMTP\r\n"))
		io.Copy(io.Discard, c)
	})
	for _, tc := range []struct {
		name        string
		addr        string
		window      time.Duration
		run         func(c net.Conn) error
		want        tlsdial.Protection
		wantPrelude string
		wantLog     bool
	}{
		{"server first", greeter.Addr().String(), 0, func(c net.Conn) error {
			_, err := c.Read(make([]byte, 64))
			return err
		}, tlsdial.UnprotectedServerFirst, "", true},
		{"not a hello", srv.addr, 0, func(c net.Conn) error {
			_, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
			return err
		}, tlsdial.UnprotectedNotHello, "", true},
		{"not a hello after S", srv.addr, 0, func(c net.Conn) error {
			if _, err := c.Write(sslRequest); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				return err
			}
			_, err := c.Write([]byte("not a hello"))
			return err
		}, tlsdial.UnprotectedNotHello, "PostgreSQL SSLRequest", true},
		{"replay off", srv.addr, -1, func(c net.Conn) error {
			_, err := c.Write(sslRequest)
			return err
		}, tlsdial.UnprotectedReplayOff, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log syncBuf
			td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, StallWindow: tc.window,
				Logger: slog.New(slog.NewTextHandler(&log, nil))}
			c, err := td.Dial("tcp", tc.addr)
			require.NoError(t, err)
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			require.NoError(t, tc.run(c))
			var r tlsdial.Report
			require.Eventually(t, func() bool {
				r = c.(*tlsdial.TCPConn).Report()
				return len(r.Attempts) == 1 && r.Attempts[0].Outcome == tlsdial.OutcomeOK
			}, 2*time.Second, 5*time.Millisecond)
			assert.Equal(t, tc.want, r.Protection)
			assert.Equal(t, tc.wantPrelude, r.Prelude)
			assert.Contains(t, r.String(), tc.want.String()+"\n")
			assert.True(t, strings.HasPrefix(tc.want.String(), "not protected: "))
			if tc.wantLog {
				assert.Eventually(t, func() bool { return strings.Contains(log.String(), "tlsdial: not protected") }, time.Second, 5*time.Millisecond)
			} else {
				time.Sleep(20 * time.Millisecond)
				assert.NotContains(t, log.String(), "not protected")
			}
		})
	}
}

func TestProtectionString(t *testing.T) {
	for p, want := range map[tlsdial.Protection]string{
		tlsdial.Protected:              "protected",
		tlsdial.UnprotectedNotHello:    "not protected: not a ClientHello",
		tlsdial.UnprotectedServerFirst: "not protected: the server spoke first",
		tlsdial.UnprotectedDeclined:    "not protected: the server declined TLS",
		tlsdial.UnprotectedReplayOff:   "not protected: replay disabled (StallWindow < 0)",
		tlsdial.UnprotectedHelloRetry:  "not protected: the server asked for a second ClientHello (HelloRetryRequest)",
		tlsdial.Protection(99):         "not protected: Protection(99)",
	} {
		assert.Equal(t, want, p.String())
	}
	assert.NotContains(t, tlsdial.Report{}.String(), "protected", "the zero Report says nothing of it")
}

// syncBuf is a bytes.Buffer safe for a logger and a test at once.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTCPDialerHelloRetry: a server that takes only P-256 (PostgreSQL 15)
// answers Go's default hello with a HelloRetryRequest, which crosses any
// hole; its large flight follows the second hello. On attempt 1, the first
// hello and the retry request become an exchange each raced attempt
// replays and checks, and the second hello is watched: a downstream black
// hole is recovered.
func TestTCPDialerHelloRetry(t *testing.T) {
	leaktest.Check(t)
	ca, err := testcert.NewCA()
	require.NoError(t, err)
	cert, err := ca.Issue([]string{serverName, "127.0.0.1"}, 150)
	require.NoError(t, err)
	ln := tls.NewListener(testcert.Listen(t), &tls.Config{
		Certificates:     []tls.Certificate{cert},
		CurvePreferences: []tls.CurveID{tls.CurveP256}, // as PostgreSQL 15
	})
	testcert.Serve(t, ln, func(c net.Conn, _ func(net.Conn)) { copyConn(c, c) })
	for _, tc := range []struct {
		name        string
		dir         pmtutest.Direction
		curves      []tls.CurveID
		wantPrelude string
		wantMSS     int
		want        tlsdial.Protection
	}{
		{"healthy/default", 0, nil, "HelloRetryRequest", 0, tlsdial.Protected},
		{"downstream/default", pmtutest.Downstream, nil, "HelloRetryRequest", 1360, tlsdial.Protected},
		// The first hello is lost: a raced attempt gets the retry
		// request and keeps the connection, clamped, with its second
		// hello unwatched.
		{"both/default", pmtutest.Both, nil, "", 1360, tlsdial.UnprotectedHelloRetry},
		{"downstream/P-256", pmtutest.Downstream, []tls.CurveID{tls.CurveP256}, "", 1360, tlsdial.Protected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := ln.Addr().String()
			if tc.dir != 0 {
				addr = blackHole(t, addr, 1400, tc.dir)
			}
			td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
			raw, err := td.Dial("tcp", addr)
			require.NoError(t, err)
			defer raw.Close()
			raw.SetDeadline(time.Now().Add(8 * time.Second))
			cfg := &tls.Config{RootCAs: ca.Pool, ServerName: serverName, CurvePreferences: tc.curves}
			tc2 := tls.Client(raw, cfg)
			require.NoError(t, tc2.Handshake(), "%s", raw.(*tlsdial.TCPConn).Report())
			assert.Equal(t, tls.CurveP256, tc2.ConnectionState().CurveID)
			echo(t, tc2)
			r := raw.(*tlsdial.TCPConn).Report()
			t.Logf("\n%s", r)
			assert.Equal(t, tc.want, r.Protection, "%s", r)
			assert.Equal(t, tc.wantPrelude, r.Prelude)
			assert.Equal(t, tc.wantMSS, r.MSS, "%s", r)
		})
	}
}
