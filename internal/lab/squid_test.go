//go:build linux

package lab_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fitshake/fitshake/fingerprint"
	"github.com/fitshake/fitshake/internal/lab"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// squidPort is the port the router hands to Squid: nginx's small
// certificate behind it.
const squidPort = lab.SquidInterceptedPort

// TestLabSquid puts a real TLS-inspecting proxy on the path: Squid's
// SslBump (Debian's squid-openssl) in the router namespace, intercepting
// the client's port-443 flows transparently (nft redirect, both
// families), peeking at each ClientHello, looking its server name up, and
// splicing the flow to the client's original destination, as enterprises
// deploy it (lab.Squid). Four labs run side by side:
//
//   - healthy: the Dialer's full post-quantum hello and, alone, its
//     one-segment compact hello complete through Squid, as do TCPDialer
//     and stock crypto/tls, on IPv4 and IPv6; Squid's access.log shows
//     every flow spliced to the original destination.
//   - hold-and-release: Squid's resolver answers after 0.9 s, and Squid
//     holds every new connection for a name until its answer comes, then
//     releases them together. 10 first dials with default options, each
//     to a fresh name from a fresh cache, and the dial after each (same
//     dialer and cache): none may learn an MSS clamp or a smaller hello.
//   - blocklist: Squid terminates one server name after peeking at the
//     whole hello (ssl::server_name, ssl_bump terminate). The Dialer
//     fails within a second, with ErrHelloRejected and a class and fix
//     that do not blame split-intolerance or offer a weaker hello.
//   - far black hole: packets over 1400 bytes vanish between Squid and
//     the server, with no ICMP. Squid acknowledges the client's hello
//     itself; nothing gets through, and the Dialer must say so.
func TestLabSquid(t *testing.T) {
	lab.Require(t)
	for _, c := range []struct {
		name string
		cfg  lab.SquidConfig
		run  func(*testing.T, *lab.Lab)
	}{
		{"healthy", lab.SquidConfig{}, squidHealthy},
		{"hold-and-release", lab.SquidConfig{ResolverDelay: squidHold}, squidHoldAndRelease},
		{"blocklist", lab.SquidConfig{Block: []string{squidBlocked}}, squidBlocklist},
		{"far-blackhole", lab.SquidConfig{FarMTU: 1400}, squidFarBlackhole},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			l := lab.New(t, lab.Config{Scenario: lab.Squid, Squid: c.cfg})
			_, err := l.StartNginx()
			require.NoError(t, err)
			t.Cleanup(func() { logSquid(t, l) })
			c.run(t, l)
		})
	}
}

// TestLabSquidTeardown checks that a lab's Close ends its Squid and its
// resolver, and removes the shared memory Squid keeps in the host's
// /dev/shm under the lab's prefix.
func TestLabSquidTeardown(t *testing.T) {
	lab.Require(t)
	l := lab.New(t, lab.Config{Scenario: lab.Squid})
	pid, err := l.SquidPid()
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, 0), "squid should run")
	shm, _ := filepath.Glob(filepath.Join("/dev/shm", l.Prefix()+"-*"))
	assert.NotEmpty(t, shm, "squid's shared memory, named after the lab's prefix")
	t0 := time.Now()
	require.NoError(t, l.Close())
	t.Logf("closed in %v", time.Since(t0).Round(time.Millisecond))
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "squid outlived its lab")
	shm, _ = filepath.Glob(filepath.Join("/dev/shm", l.Prefix()+"-*"))
	assert.Empty(t, shm, "squid's shared memory outlived its lab")
}

// squidArgs are a dial's arguments through Squid to name (ServerName if
// empty) in family f.
func squidArgs(t *testing.T, l *lab.Lab, f lab.Family, name string, timeout time.Duration) lab.DialArgs {
	pki, err := l.PKI()
	require.NoError(t, err)
	return lab.DialArgs{Addr: l.Addr(f, squidPort), ServerName: name, CAFile: pki.CAFile, Timeout: timeout}
}

// squidDial runs client once and returns its run.
func squidDial(t *testing.T, l *lab.Lab, client string, args lab.DialArgs) lab.DialRun {
	res, err := l.Dial(context.Background(), client, args)
	require.NoError(t, err)
	require.NotEmpty(t, res.Runs)
	return res.Runs[0]
}

func squidHealthy(t *testing.T, l *lab.Lab) {
	t.Run("dials", func(t *testing.T) {
		for _, f := range lab.Families() {
			t.Run(fmt.Sprintf("%s/%s", f, lab.FitshakeDialer), func(t *testing.T) {
				t.Parallel()
				r := squidDial(t, l, lab.FitshakeDialer, squidArgs(t, l, f, "", 10*time.Second))
				t.Logf("ok=%v in %v: %s %s", r.OK, r.Elapsed.Round(10*time.Microsecond), r.Report, r.Err)
				require.True(t, r.OK, "%s (%s)", r.Err, r.Report)
				w := winner(r.Report)
				require.NotNil(t, w, "%s", r.Report)
				assert.Equal(t, fingerprint.NamePostQuantum, w.Rung, "the full hello: %s", r.Report)
				assert.Zero(t, w.MTU, "no clamp: %s", r.Report)
			})
			t.Run(fmt.Sprintf("%s/%s", f, fingerprint.NameCompact), func(t *testing.T) {
				t.Parallel()
				args := squidArgs(t, l, f, "", 10*time.Second)
				args.Rung = fingerprint.NameCompact
				r := squidDial(t, l, lab.FingerprintRung, args)
				t.Logf("%s %s: ok=%v in %v %s %s", fingerprint.NameCompact, helloSize(r), r.OK,
					r.Elapsed.Round(10*time.Microsecond), r.Group, r.Err)
				require.True(t, r.OK, "%s", r.Err)
			})
			for _, client := range []string{lab.FitshakeTCP, lab.StockTLS} {
				t.Run(fmt.Sprintf("%s/%s", f, client), func(t *testing.T) {
					t.Parallel()
					r := squidDial(t, l, client, squidArgs(t, l, f, "", 10*time.Second))
					t.Logf("ok=%v in %v: %s %s", r.OK, r.Elapsed.Round(10*time.Microsecond), r.Report, r.Err)
					require.True(t, r.OK, "%s (%s)", r.Err, r.Report)
				})
			}
		}
	})
	// Every dial went through Squid: intercepted, peeked at, spliced to
	// the original destination (a tunnel the client closes early is
	// logged TCP_TUNNEL/500).
	log, err := l.SquidAccessLog()
	require.NoError(t, err)
	for _, f := range lab.Families() {
		want := "ORIGINAL_DST/" + l.IP(lab.Server, f).String()
		n := 0
		for _, r := range log {
			if strings.HasPrefix(r.Result, "TCP_TUNNEL/") && r.Hierarchy == want {
				n++
			}
		}
		assert.GreaterOrEqual(t, n, 4, "%s: Squid should have spliced every dial to %s: %+v", f, want, log)
	}
	drops, err := l.Drops()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, drops["squid: intercepted"], int64(8), "intercepted connections: %v", drops)
}

// squidHold is the hold-and-release lab's resolver delay.
const squidHold = 900 * time.Millisecond

// squidHoldDials is how many first dials hold-and-release makes.
const squidHoldDials = 10

func squidHoldAndRelease(t *testing.T, l *lab.Lab) {
	var learned, startedReduced, held int
	for i := range squidHoldDials {
		f := lab.Families()[i%2]
		// A fresh name per first dial: Squid caches an answer for a
		// minute, and would hold only the first.
		name := fmt.Sprintf("hold%d.%s", i+1, lab.ServerName)
		args := squidArgs(t, l, f, name, 10*time.Second)
		args.Runs, args.ShareCache = 2, true
		res, err := l.Dial(context.Background(), lab.FitshakeDialer, args)
		require.NoError(t, err)
		require.Len(t, res.Runs, 2)
		first, second := res.Runs[0], res.Runs[1]
		t.Logf("dial %d (%s, %s): first ok=%v in %v: %s %s", i+1, f, name, first.OK,
			first.Elapsed.Round(time.Millisecond), first.Report, first.Err)
		t.Logf("dial %d: second ok=%v in %v: %s %s", i+1, second.OK,
			second.Elapsed.Round(time.Millisecond), second.Report, second.Err)
		if !assert.True(t, first.OK, "dial %d: first: %s", i+1, first.Err) ||
			!assert.True(t, second.OK, "dial %d: second: %s", i+1, second.Err) {
			continue
		}
		if first.Elapsed >= squidHold {
			held++
		}
		if w := winner(first.Report); w == nil || reduced(*w) {
			learned++
			assert.Fail(t, "a first dial learned a reduction through a box that only held it",
				"dial %d: the winner should be the full hello, unclamped: %s", i+1, first.Report)
		}
		if w := winner(second.Report); w == nil || reduced(*w) {
			assert.Fail(t, "a second dial used a reduction", "dial %d: %s", i+1, second.Report)
		}
		if a := second.Report.Attempts; len(a) == 0 || reduced(a[0]) {
			startedReduced++
			assert.Fail(t, "a second dial started reduced: the cache pinned what a healthy path does not need",
				"dial %d: %s", i+1, second.Report)
		}
	}
	t.Logf("hold-and-release: %d of %d first dials held ≥ %v; %d learned a clamp or a smaller hello; %d second dials started reduced",
		held, squidHoldDials, squidHold, learned, startedReduced)
	// The hold is Squid's, as designed: one lookup per name, every
	// connection of a dial waiting on it.
	events, err := l.ResolverLog()
	require.NoError(t, err)
	queries, answers := map[string]time.Time{}, map[string]time.Time{}
	for _, e := range events {
		if e.Type != "A" || !strings.HasPrefix(e.Name, "hold") {
			continue
		}
		key := e.Name
		if e.Answer {
			answers[key] = e.Time
			continue
		}
		_, dup := queries[key]
		assert.False(t, dup, "Squid asked for %s more than once: it should wait on one lookup per name", key)
		queries[key] = e.Time
	}
	assert.Len(t, queries, squidHoldDials, "one A lookup per fresh name")
	for name, q := range queries {
		a, ok := answers[name]
		if assert.True(t, ok, "%s never answered", name) {
			assert.GreaterOrEqual(t, a.Sub(q), squidHold, "%s answered early", name)
		}
	}
	assert.Equal(t, squidHoldDials, held, "every first dial should have waited for Squid's resolver")
}

// squidBlocked is the server name the blocklist lab's Squid refuses.
var squidBlocked = "blocked." + lab.ServerName

// squidBlockBound is how long a dial to a refused name may take: Squid
// closes a connection about 5 ms after the hello; a second is the issue's
// bound, with room for a loaded machine's redials.
const squidBlockBound = time.Second

func squidBlocklist(t *testing.T, l *lab.Lab) {
	for _, f := range lab.Families() {
		t.Run(fmt.Sprintf("%s/allowed", f), func(t *testing.T) {
			t.Parallel()
			r := squidDial(t, l, lab.FitshakeDialer, squidArgs(t, l, f, "", 10*time.Second))
			t.Logf("%s: ok=%v in %v: %s %s", lab.ServerName, r.OK, r.Elapsed.Round(10*time.Microsecond), r.Report, r.Err)
			require.True(t, r.OK, "only %s is blocked: %s (%s)", squidBlocked, r.Err, r.Report)
		})
		t.Run(fmt.Sprintf("%s/%s", f, lab.StockTLS), func(t *testing.T) {
			t.Parallel()
			r := squidDial(t, l, lab.StockTLS, squidArgs(t, l, f, squidBlocked, 5*time.Second))
			t.Logf("ok=%v in %v: %s", r.OK, r.Elapsed.Round(10*time.Microsecond), r.Err)
			require.False(t, r.OK, "Squid should refuse %s", squidBlocked)
			assert.Less(t, r.Elapsed, squidBlockBound)
		})
		t.Run(fmt.Sprintf("%s/%s", f, lab.FitshakeDialer), func(t *testing.T) {
			t.Parallel()
			r := squidDial(t, l, lab.FitshakeDialer, squidArgs(t, l, f, squidBlocked, 10*time.Second))
			rep := r.Report
			t.Logf("ok=%v in %v: %s", r.OK, r.Elapsed.Round(10*time.Microsecond), rep)
			t.Logf("report class %q: %s", reportField(rep, func(r *lab.Report) string { return r.Class }),
				reportField(rep, func(r *lab.Report) string { return r.Diagnosis }))
			t.Logf("error (class %q, HelloRejected=%v): %s", r.ErrClass, r.HelloRejected, r.Err)
			t.Logf("error's client fix: %q; network fix: %q", r.ErrFix, r.ErrNetworkFix)
			require.False(t, r.OK, "Squid should refuse %s: %s", squidBlocked, rep)
			require.NotNil(t, rep)
			for _, a := range rep.Attempts {
				assert.NotEqual(t, "ok", a.Outcome, "%s", rep)
			}
			assert.Less(t, r.Elapsed, squidBlockBound, "a box that refuses at once: fail within a second: %s", rep)
			assert.True(t, r.HelloRejected, "errors.Is(err, tlsdial.ErrHelloRejected): %s", r.Err)
			split := pmtu.ClassSplitIntolerant.String()
			assert.NotEqual(t, split, r.ErrClass, "the one-segment compact hello was refused the same way: not split-intolerance: %s", r.Err)
			assert.NotEqual(t, split, rep.Class, "report: %s", rep.Diagnosis)
			assert.NotContains(t, r.ErrFix, "AllowClassical", "no weaker hello gets past a box that refuses the name")
			assert.NotEmpty(t, r.ErrNetworkFix, "a fix to ask of the network")
		})
	}
}

// squidFarDeadline bounds a dial through the far black hole: the Dialer
// gives up on its own after about 10 s.
const squidFarDeadline = 15 * time.Second

func squidFarBlackhole(t *testing.T, l *lab.Lab) {
	t.Run("dials", func(t *testing.T) {
		for _, f := range lab.Families() {
			t.Run(fmt.Sprintf("%s/%s", f, lab.FitshakeDialer), func(t *testing.T) {
				t.Parallel()
				r := squidDial(t, l, lab.FitshakeDialer, squidArgs(t, l, f, "", squidFarDeadline))
				rep := r.Report
				t.Logf("ok=%v in %v (timed out: %v): %s", r.OK, r.Elapsed.Round(time.Millisecond), r.TimedOut, rep)
				t.Logf("report class %q: %s", reportField(rep, func(r *lab.Report) string { return r.Class }),
					reportField(rep, func(r *lab.Report) string { return r.Diagnosis }))
				t.Logf("error (class %q, HelloRejected=%v): %s", r.ErrClass, r.HelloRejected, r.Err)
				t.Logf("error's client fix: %q; network fix: %q", r.ErrFix, r.ErrNetworkFix)
				require.False(t, r.OK, "nothing over 1400 bytes crosses Squid's far side: %s", rep)
				require.NotNil(t, rep)
				for _, a := range rep.Attempts {
					assert.NotEqual(t, "ok", a.Outcome, "%s", rep)
				}
				// Every hello acknowledged, down to the smallest clamp, and
				// nothing back: the dial names a box acknowledging for the
				// server, and what to ask of it.
				proxy := pmtu.ClassProxy.String()
				assert.Equal(t, proxy, rep.Class, "report: %s", rep.Diagnosis)
				assert.Contains(t, r.Err, "acknowledges for the server")
				assert.Contains(t, r.ErrNetworkFix, "far side")
			})
			for _, c := range []struct{ name, client, rung string }{
				{lab.StockTLS, lab.StockTLS, ""},
				{fingerprint.NameCompact, lab.FingerprintRung, fingerprint.NameCompact},
			} {
				t.Run(fmt.Sprintf("%s/%s", f, c.name), func(t *testing.T) {
					t.Parallel()
					args := squidArgs(t, l, f, "", 3*time.Second)
					args.Rung = c.rung
					r := squidDial(t, l, c.client, args)
					t.Logf("%s: ok=%v in %v: %s", helloSize(r), r.OK, r.Elapsed.Round(time.Millisecond), r.Err)
					assert.False(t, r.OK, "nothing over 1400 bytes crosses Squid's far side")
				})
			}
		}
	})
	drops, err := l.Drops()
	require.NoError(t, err)
	assert.Positive(t, drops["squid: far blackhole"], "the far side should have dropped Squid's packets: %v", drops)
}

// winner returns the attempt of rep that completed, or nil.
func winner(rep *lab.Report) *lab.Attempt {
	if rep == nil {
		return nil
	}
	for i := range rep.Attempts {
		if rep.Attempts[i].Outcome == "ok" {
			return &rep.Attempts[i]
		}
	}
	return nil
}

// reduced reports whether a used an MSS clamp or a hello smaller than the
// full post-quantum one.
func reduced(a lab.Attempt) bool {
	return a.MTU != 0 || a.MSS != 0 || a.Rung != fingerprint.NamePostQuantum
}

// logSquid logs what Squid and its resolver saw.
func logSquid(t *testing.T, l *lab.Lab) {
	drops, err := l.Drops()
	if err == nil {
		t.Logf("%s: router counters %v", l.Config(), drops)
	}
	if log, err := l.SquidAccessLog(); err == nil {
		for _, r := range log {
			t.Logf("squid access.log: %s %6v %-22s %-14s %5d %s %s %s", r.End.Format("15:04:05.000"), r.Elapsed,
				r.Client, r.Result, r.Bytes, r.Method, r.URL, r.Hierarchy)
		}
	}
	if ev, err := l.ResolverLog(); err == nil {
		for _, e := range ev {
			what := "query "
			if e.Answer {
				what = "answer"
			}
			t.Logf("resolver: %s %s %s %s", e.Time.Format("15:04:05.000"), what, e.Type, e.Name)
		}
	}
}
