//go:build linux

package lab_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pgClientArgs are the arguments of the "postgres" client.
type pgClientArgs struct {
	Driver  string // "pgx" (pgconn) or "pq" (lib/pq)
	Dialer  string // "stock" (a net.Dialer) or "fitshake" (a TCPDialer, no option)
	Addr    string
	CAFile  string
	SSLMode string
	Timeout time.Duration // the driver's connect timeout
}

// pgDial is one dial the driver made, as fitshake reported it.
type pgDial struct {
	Attempts   int
	MSS        int
	Protection string
	Prelude    string
	Report     string
}

// pgClientResult is what the "postgres" client returns.
type pgClientResult struct {
	Value string // SELECT 1's result
	Err   string
	Took  time.Duration
	Dials int      // the driver's dials
	Conns int      // TCP connections opened: a fitshake dial's attempts
	Fit   []pgDial // fitshake's dials
}

func init() {
	lab.RegisterClient("postgres", func(ctx context.Context, raw json.RawMessage) (any, error) {
		var a pgClientArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		return pgClient(ctx, a), nil
	})
}

// pgClient connects with the driver over the dialer, runs SELECT 1 and
// counts the dials and connections.
func pgClient(ctx context.Context, a pgClientArgs) pgClientResult {
	var res pgClientResult
	var mu sync.Mutex
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, Trace: &tlsdial.Trace{Done: func(i tlsdial.DoneInfo) {
		r := i.Report
		mu.Lock()
		defer mu.Unlock()
		res.Fit = append(res.Fit, pgDial{Attempts: len(r.Attempts), MSS: r.MSS,
			Protection: r.Protection.String(), Prelude: r.Prelude, Report: r.String()})
	}}}
	stock := &countingDialer{}
	host, port, _ := net.SplitHostPort(a.Addr)
	dsn := fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=%s sslrootcert=%s connect_timeout=%d",
		host, port, lab.PostgresUser, lab.PostgresUser, a.SSLMode, a.CAFile, int(a.Timeout.Seconds()))
	t0 := time.Now()
	var err error
	switch a.Driver {
	case "pgx":
		res.Value, err = pgxQuery(ctx, dsn, a, td, stock)
	case "pq":
		res.Value, err = pqQuery(ctx, dsn, a, td, stock)
	default:
		err = fmt.Errorf("unknown driver %q", a.Driver)
	}
	res.Took = time.Since(t0)
	if err != nil {
		res.Err = err.Error()
	}
	// The Done hooks of failed dials run before their DialContext
	// returns; a dial that succeeded is done once the reply came.
	mu.Lock()
	defer mu.Unlock()
	if a.Dialer == "stock" {
		res.Dials = int(stock.n.Load())
		res.Conns = res.Dials
	} else {
		res.Dials = len(res.Fit)
		for _, d := range res.Fit {
			res.Conns += d.Attempts
		}
	}
	return res
}

func pgxQuery(ctx context.Context, dsn string, a pgClientArgs, td *tlsdial.TCPDialer, stock *countingDialer) (string, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "", err
	}
	cfg.DialFunc = td.DialContext
	if a.Dialer == "stock" {
		cfg.DialFunc = stock.DialContext
	}
	ctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
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

func pqQuery(ctx context.Context, dsn string, a pgClientArgs, td *tlsdial.TCPDialer, stock *countingDialer) (string, error) {
	c, err := pq.NewConnector(dsn)
	if err != nil {
		return "", err
	}
	if a.Dialer == "stock" {
		c.Dialer(stock)
	} else {
		c.Dialer(td)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	var one string
	err = db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	return one, err
}

// countingDialer is a net.Dialer that counts its dials, for lib/pq and pgx.
type countingDialer struct {
	d net.Dialer
	n atomic.Int32
}

func (c *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c.n.Add(1)
	return c.d.DialContext(ctx, network, addr)
}

func (c *countingDialer) Dial(network, addr string) (net.Conn, error) {
	return c.DialContext(context.Background(), network, addr)
}

func (c *countingDialer) DialTimeout(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.DialContext(ctx, network, addr)
}

// Bounds of TestLabPostgres.
const (
	pgStockTimeout = 3 * time.Second  // the drivers' connect timeout for stock dials
	pgFitTimeout   = 10 * time.Second // and for fitshake's, which must finish well within it
	pgFitBound     = 4 * time.Second  // a fitshake connect and query, racing included
)

// TestLabPostgres runs Debian's PostgreSQL (ssl=on, the long chain, hostssl
// only) behind black holes upstream, downstream and both, IPv4 and IPv6:
// pgx and lib/pq over a TCPDialer with no option connect and run SELECT 1,
// replaying the SSLRequest and the ClientHello on a clamped attempt; over
// a net.Dialer they fail at their timeout. With ssl=off (the server
// answers 'N'), pgx with sslmode=prefer and disable gets the same result
// over the same number of connections as over a net.Dialer.
func TestLabPostgres(t *testing.T) {
	lab.Require(t)
	if why := lab.PostgresMissing(); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s [CI=true: the lab must run in CI]", why)
		}
		t.Skip(why)
	}
	for _, dir := range []lab.Direction{lab.Upstream, lab.Downstream, lab.Both} {
		t.Run(string(dir), func(t *testing.T) {
			t.Parallel()
			l := lab.New(t, lab.Config{Scenario: lab.Blackhole, Direction: dir})
			pg, err := l.StartPostgres(true)
			require.NoError(t, err)
			pki, err := l.PKI()
			require.NoError(t, err)
			for _, fam := range lab.Families() {
				for _, driver := range []string{"pgx", "pq"} {
					name := fmt.Sprintf("%s/%s/%s", dir, fam, driver)
					args := pgClientArgs{Driver: driver, Addr: l.Addr(fam, lab.PortPostgres),
						CAFile: pki.CAFile, SSLMode: "verify-full"}

					before := pgConns(pg)
					args.Dialer, args.Timeout = "fitshake", pgFitTimeout
					fit := runPG(t, l, args)
					seen := pgConns(pg) - before
					t.Logf("%s fitshake: %q %s in %s, %d dial(s), %d connection(s)\n%s", name, fit.Value, fit.Err,
						fit.Took.Round(time.Millisecond), fit.Dials, fit.Conns, fitReports(fit))
					if assert.Empty(t, fit.Err, name) {
						assert.Equal(t, "1", fit.Value, name)
						assert.Less(t, fit.Took, pgFitBound, name)
						require.Len(t, fit.Fit, 1, name)
						d := fit.Fit[0]
						assert.NotZero(t, d.MSS, "%s: a clamp got through", name)
						assert.LessOrEqual(t, d.MSS, l.MaxMSS(fam), name)
						assert.GreaterOrEqual(t, d.Attempts, 2, name)
						// PostgreSQL 15 takes only P-256 and Go offers
						// X25519MLKEM768 and X25519 shares: the server's
						// first reply is a HelloRetryRequest.
						if dir == lab.Downstream {
							// Attempt 1 got it: the second hello is
							// watched, and replayed after the first.
							assert.Equal(t, "protected", d.Protection, name)
							assert.Equal(t, "PostgreSQL SSLRequest, HelloRetryRequest", d.Prelude, name)
						} else {
							// The first hello was lost: a raced attempt
							// got the retry request and kept the
							// connection, its second hello unwatched.
							assert.Equal(t, tlsdial.UnprotectedHelloRetry.String(), d.Protection, name)
							assert.Equal(t, "PostgreSQL SSLRequest", d.Prelude, name)
						}
					}
					assert.Equal(t, fit.Conns, seen, "%s: the server saw one connection per attempt", name)

					args.Dialer, args.Timeout = "stock", pgStockTimeout
					stock := runPG(t, l, args)
					t.Logf("%s stock: failed in %s: %s", name, stock.Took.Round(time.Millisecond), stock.Err)
					assert.NotEmpty(t, stock.Err, "%s: stock gets past a %s black hole?", name, dir)
					assert.Less(t, stock.Took, pgStockTimeout+2*time.Second, name)
				}
			}
			if dir != lab.Both {
				return
			}
			// ssl=off, behind the same black hole: the answer 'N' passes
			// through and nothing is replayed.
			plain, err := l.StartPostgres(false)
			require.NoError(t, err)
			for _, fam := range lab.Families() {
				for _, mode := range []string{"prefer", "disable"} {
					name := fmt.Sprintf("ssl=off/%s/%s", fam, mode)
					args := pgClientArgs{Driver: "pgx", Addr: l.Addr(fam, lab.PortPostgresNoSSL),
						CAFile: pki.CAFile, SSLMode: mode, Timeout: pgStockTimeout}
					before := pgConns(plain)
					args.Dialer = "stock"
					stock := runPG(t, l, args)
					mid := pgConns(plain)
					args.Dialer = "fitshake"
					fit := runPG(t, l, args)
					after := pgConns(plain)
					t.Logf("%s: stock %q %q %d conns, fitshake %q %q %d conns\n%s", name, stock.Value, stock.Err,
						stock.Conns, fit.Value, fit.Err, fit.Conns, fitReports(fit))
					assert.Empty(t, stock.Err, name)
					assert.Equal(t, stock.Value, fit.Value, name)
					assert.Equal(t, stock.Err, fit.Err, name)
					assert.Equal(t, stock.Dials, fit.Dials, name)
					assert.Equal(t, stock.Conns, fit.Conns, "%s: no extra connection", name)
					assert.Equal(t, mid-before, after-mid, "%s: the server saw as many connections", name)
					for _, d := range fit.Fit {
						assert.Contains(t, d.Protection, "not protected", name)
						assert.Equal(t, 1, d.Attempts, name)
					}
				}
			}
		})
	}
}

func runPG(t *testing.T, l *lab.Lab, a pgClientArgs) pgClientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), a.Timeout+30*time.Second)
	defer cancel()
	raw, err := l.RunClient(ctx, "postgres", a)
	require.NoError(t, err)
	var res pgClientResult
	require.NoError(t, json.Unmarshal(raw, &res))
	return res
}

func fitReports(r pgClientResult) string {
	s := ""
	for i, d := range r.Fit {
		s += fmt.Sprintf("dial %d (%s):\n%s", i+1, d.Protection, d.Report)
	}
	return s
}

// pgConns counts the connections p received, once its log has been quiet
// for 200 ms: a backend logs its connection a moment after the client saw
// it accepted.
func pgConns(p *lab.Process) int {
	n := lab.PostgresConnections(p)
	for range 50 {
		time.Sleep(200 * time.Millisecond)
		m := lab.PostgresConnections(p)
		if m == n {
			break
		}
		n = m
	}
	return n
}
