//go:build linux && labtable

package lab_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/require"
)

var (
	flagCostRounds = flag.Int("labcost.rounds", 7, "TestLabCost: herd rounds per client")
	flagCostFirsts = flag.Int("labcost.firsts", 21, "TestLabCost: fresh processes per client and black hole")
	flagCostHerd   = flag.Int("labcost.herd", 500, "TestLabCost: dials at once in a herd")
	flagCostProf   = flag.String("labcost.profile", "", "TestLabCost: write each herd process's CPU profile to PREFIX-CLIENT-ROUND.prof")
)

// The clients of TestLabCost, each a fresh process: fitshake's two dialers
// and crypto/tls with its MSS clamped to fit the black hole (what a user
// who knew the path would configure: the bar fitshake's recovery is held
// to).
const (
	costDialer  = "dialer"
	costTCP     = "tcpdialer"
	costClamped = "stock-clamped"
)

// costArgs are the arguments of the cost clients.
type costArgs struct {
	Client string // costDialer, costTCP or costClamped
	Addr   string
	CAFile string
	MTU    int // costClamped's clamp
	N      int // dials at once (herd); 1: one dial
	// Twice makes a one-dial process dial again afterwards, with a fresh
	// dialer and cache: the same cold cache in a warm process.
	Twice bool
	// Profile, if set, is a file for the process's CPU profile.
	Profile string
	// Timeline traces a one-dial process's dials (Dialer only): the
	// hooks cost a cold process time of their own, so such a run is not
	// measured.
	Timeline bool
}

// costResult is what a cost client returns.
type costResult struct {
	Elapsed []time.Duration // the completed dials' times
	Failed  int
	Err     string // the first failure
	// The one-dial runs' timelines (Dialer only): each event's time since
	// the dial began.
	Timeline [][]string
}

func init() {
	lab.RegisterClient("cost", func(ctx context.Context, raw json.RawMessage) (any, error) {
		var a costArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		return runCost(ctx, a)
	})
}

func runCost(ctx context.Context, a costArgs) (costResult, error) {
	var res costResult
	if a.Profile != "" {
		f, err := os.Create(a.Profile)
		if err != nil {
			return res, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return res, err
		}
		defer pprof.StopCPUProfile()
	}
	pem, err := os.ReadFile(a.CAFile)
	if err != nil {
		return res, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: lab.ServerName, NextProtos: []string{"h2", "http/1.1"}}
	newDial := func() (func(ctx context.Context) (net.Conn, error), error) {
		switch a.Client {
		case costDialer:
			d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}}
			return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", a.Addr) }, nil
		case costTCP:
			td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
			return func(ctx context.Context) (net.Conn, error) {
				raw, err := td.DialContext(ctx, "tcp", a.Addr)
				if err != nil {
					return nil, err
				}
				c := tls.Client(raw, cfg.Clone())
				if err := c.HandshakeContext(ctx); err != nil {
					raw.Close()
					return nil, err
				}
				return c, nil
			}, nil
		case costClamped:
			nd, err := pmtu.DialerWithMTU(&net.Dialer{}, a.MTU)
			if err != nil {
				return nil, err
			}
			d := &tls.Dialer{NetDialer: nd, Config: cfg}
			return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", a.Addr) }, nil
		}
		return nil, fmt.Errorf("unknown cost client %q", a.Client)
	}
	var mu sync.Mutex
	one := func(dial func(context.Context) (net.Conn, error), timeline bool) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var ev []string
		t0 := time.Now()
		if timeline {
			at := func(s string) {
				mu.Lock()
				ev = append(ev, fmt.Sprintf("%v %s", time.Since(t0).Round(10*time.Microsecond), s))
				mu.Unlock()
			}
			ctx = tlsdial.WithTrace(ctx, &tlsdial.Trace{
				AttemptStart: func(i tlsdial.AttemptStartInfo) { at(fmt.Sprintf("start %d mtu=%d", i.ID, i.MTU)) },
				Stall: func(i tlsdial.StallInfo) {
					el := i.Diagnosis.Evidence.Elapsed.Round(time.Microsecond)
					at(fmt.Sprintf("stall %d %s (%v after the hello)", i.ID, i.Diagnosis.Class, el))
				},
				AttemptDone: func(i tlsdial.AttemptDoneInfo) {
					at(fmt.Sprintf("done %d %s", i.Attempt.ID, i.Attempt.Outcome))
				},
			})
		}
		c, err := dial(ctx)
		d := time.Since(t0)
		mu.Lock()
		defer mu.Unlock()
		if timeline {
			res.Timeline = append(res.Timeline, append(ev, fmt.Sprintf("%v handshake", d.Round(10*time.Microsecond))))
		}
		if err != nil {
			res.Failed++
			if res.Err == "" {
				res.Err = err.Error()
			}
			return
		}
		c.Close()
		res.Elapsed = append(res.Elapsed, d)
	}
	dial, err := newDial()
	if err != nil {
		return res, err
	}
	if a.N <= 1 {
		one(dial, a.Timeline)
		if a.Twice {
			dial, _ = newDial()
			one(dial, a.Timeline)
		}
		return res, nil
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range a.N {
		wg.Go(func() {
			<-start
			one(dial, false)
		})
	}
	close(start)
	wg.Wait()
	return res, nil
}

// TestLabCost measures what issue 13 holds fitshake to against crypto/tls
// clamped to fit the black hole (MTU 1400), all in one run, IPv4, against
// nginx: a herd of -labcost.herd dials at once in one process (one dialer,
// one cache) through an upstream black hole, p99 per round, rounds
// alternating the clients; and a fresh process's first dial through an
// upstream black hole (small certificate) and a downstream one (long
// chain), -labcost.firsts processes per client, alternating.
//
//	go test -tags labtable ./internal/lab -run TestLabCost -v
func TestLabCost(t *testing.T) {
	lab.Require(t)
	clients := []string{costClamped, costDialer, costTCP}
	for _, c := range []struct {
		name string
		dir  lab.Direction
		port int
		herd bool
	}{
		{"upstream", lab.Upstream, lab.PortNginxSmall, true},
		{"downstream", lab.Downstream, lab.PortNginxLong, false},
	} {
		l := lab.New(t, lab.Config{Scenario: lab.Blackhole, Direction: c.dir})
		_, err := l.StartNginx()
		require.NoError(t, err)
		pki, err := l.PKI()
		require.NoError(t, err)
		run := func(client string, n int, twice bool, profile string, timeline bool) costResult {
			raw, err := l.RunClient(context.Background(), "cost", costArgs{
				Client: client, Addr: l.Addr(lab.IPv4, c.port), CAFile: pki.CAFile, MTU: lab.DefaultMTU, N: n, Twice: twice,
				Profile: profile, Timeline: timeline})
			require.NoError(t, err)
			var res costResult
			require.NoError(t, json.Unmarshal(raw, &res))
			require.Zero(t, res.Failed, "%s %s: %s", c.name, client, res.Err)
			return res
		}
		if c.herd && *flagCostRounds > 0 {
			p99 := map[string][]time.Duration{}
			for r := range *flagCostRounds {
				for i := range clients {
					client := clients[(r+i)%len(clients)]
					var prof string
					if *flagCostProf != "" {
						prof = fmt.Sprintf("%s-%s-%d.prof", *flagCostProf, client, r)
					}
					res := run(client, *flagCostHerd, false, prof, false)
					p99[client] = append(p99[client], quantile(res.Elapsed, 0.99))
				}
			}
			for _, client := range clients[1:] {
				t.Logf("herd of %d, %s black hole: %s p99 %s (rounds %v), clamped stock %s (rounds %v): %.2f×",
					*flagCostHerd, c.name, client, fmtDur(median(p99[client])), fmtDurs(p99[client]),
					fmtDur(median(p99[costClamped])), fmtDurs(p99[costClamped]),
					float64(median(p99[client]))/float64(median(p99[costClamped])))
			}
		}
		first := map[string][]time.Duration{}
		var timelines [][]string
		for r := range *flagCostFirsts {
			for i := range clients {
				client := clients[(r+i)%len(clients)]
				res := run(client, 1, false, "", false)
				first[client] = append(first[client], res.Elapsed[0])
				if client == costDialer && r < 3 {
					// Traced, not measured: the first dial of a fresh
					// process, then one with a fresh cache in it.
					timelines = append(timelines, run(client, 1, true, "", true).Timeline...)
				}
			}
		}
		for _, client := range clients[1:] {
			t.Logf("fresh process's first dial, %s black hole: %s %s (p25 %s, p75 %s), clamped stock %s (p25 %s, p75 %s): %.2f×",
				c.name, client, fmtDur(median(first[client])), fmtDur(quantile(first[client], 0.25)), fmtDur(quantile(first[client], 0.75)),
				fmtDur(median(first[costClamped])), fmtDur(quantile(first[costClamped], 0.25)), fmtDur(quantile(first[costClamped], 0.75)),
				float64(median(first[client]))/float64(median(first[costClamped])))
		}
		for i, tl := range timelines {
			which := "first dial of a fresh process"
			if i%2 == 1 {
				which = "a second dial in it, fresh cache"
			}
			t.Logf("Dialer timeline, %s black hole, %s: %v", c.name, which, tl)
		}
	}
}

func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func median(ds []time.Duration) time.Duration { return quantile(ds, 0.5) }

func fmtDurs(ds []time.Duration) []string {
	var out []string
	for _, d := range ds {
		out = append(out, fmtDur(d))
	}
	return out
}
