//go:build linux

package lab_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/fingerprint"
	"github.com/fitshake/fitshake/internal/lab"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// noMLKEMHelloOnce reads the ClientHello record of StockTLSNoMLKEM:
// GODEBUG=tlsmlkem=0 restores the pre-Go 1.24 groups, which these
// CurvePreferences name (an X25519 share only; about 300 bytes).
var noMLKEMHelloOnce = sync.OnceValues(func() (int, error) {
	return lab.GoHelloSize(&tls.Config{ServerName: lab.ServerName, NextProtos: []string{"h2", "http/1.1"},
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}})
})

// noMLKEMHello is the size of StockTLSNoMLKEM's ClientHello record.
func noMLKEMHello(t testing.TB) int {
	t.Helper()
	n, err := noMLKEMHelloOnce()
	require.NoError(t, err)
	return n
}

// The middlebox classes as the lab's Report names them.
var (
	classSplit   = pmtu.ClassSplitIntolerant.String()
	classContent = pmtu.ClassContentIntolerant.String()
)

// fixRE matches an error message that names a fix for a hello a box
// refuses: fitshake's Dialer (its compact hello), or switching crypto/tls's
// post-quantum share off.
const fixRE = `tlsdial\.Dialer|tlsmlkem=0|CurvePreferences|AllowClassical`

// fitWant is what a fitshake client must do through a box.
type fitWant struct {
	client         string
	allowClassical bool
	ok             bool
	rung           string // Report.Rung when ok; "" unchecked
	reduced        bool   // Report.SecurityReduced
	// class is Report.Class (Report.Diagnosis.Class) of a dial that
	// completes, DialRun.ErrClass (the error's) of one that fails; ""
	// unchecked.
	class    string
	rejected bool // the error matches tlsdial.ErrHelloRejected
	fix      bool // the error names the class and a fix
	clamp    bool // Report.MSS fits the path
}

// boxCase is one lab of TestLabMiddleboxes.
type boxCase struct {
	cfg     lab.Config
	ports   []int
	records []int     // record sizes the box test sends; nil: none
	fit     []fitWant // nil: fitshake not asserted here
}

// splitRecords are the fake hellos sent through a split-intolerant box:
// 1473 bytes (1448 + 25 on IPv4), 1420 (one segment), 300, and the edges
// of one full segment on each family (1448 and 1428 bytes).
var splitRecords = []int{1473, 1449, 1448, 1429, 1428, 1420, 300}

// splitWant is what fitshake must do behind a split-intolerant box that
// drops the flow: even the hello's small tail is lost, which no MTU
// explains.
var splitWant = []fitWant{
	{client: lab.FitshakeDialer, ok: true, rung: fingerprint.NameCompact, class: classSplit},
	{client: lab.FitshakeTCP, rejected: true, fix: true, class: classSplit},
}

// splitResetWant is what fitshake must do behind a split-intolerant box
// that resets the flow. The reset reaches the client before the server's
// acknowledgement of the hello's head, so the client sees what a box that
// resets large hellos shows: resets at every clamp, down to 576 bytes.
// fitshake then names the hello refused (content- or size-intolerant) and
// gets through with its one-segment hello all the same.
var splitResetWant = []fitWant{
	{client: lab.FitshakeDialer, ok: true, rung: fingerprint.NameCompact, class: classContent},
	{client: lab.FitshakeTCP, rejected: true, fix: true, class: classContent},
}

var boxCases = []boxCase{
	{cfg: lab.Config{Scenario: lab.SplitIntolerant, Reject: lab.RejectDrop}, ports: []int{lab.PortNginxSmall},
		records: splitRecords, fit: splitWant},
	{cfg: lab.Config{Scenario: lab.SplitIntolerant, Reject: lab.RejectReset}, ports: []int{lab.PortNginxSmall},
		records: splitRecords, fit: splitResetWant},
	{cfg: lab.Config{Scenario: lab.SizeIntolerant, HelloLimit: 1400}, ports: []int{lab.PortNginxSmall},
		records: []int{1401, 1400, 300}},
	{cfg: lab.Config{Scenario: lab.SizeIntolerant, HelloLimit: 1450}, ports: []int{lab.PortNginxSmall},
		records: []int{1451, 1450, 300}, fit: []fitWant{
			{client: lab.FitshakeDialer, ok: true, rung: fingerprint.NameCompact, class: classContent},
			{client: lab.FitshakeTCP, rejected: true, fix: true, class: classContent},
		}},
	{cfg: lab.Config{Scenario: lab.SizeIntolerant, HelloLimit: 1000}, ports: []int{lab.PortNginxSmall},
		records: []int{1001, 1000, 300}, fit: []fitWant{
			{client: lab.FitshakeDialer, rejected: true, fix: true, class: classContent},
			{client: lab.FitshakeDialer, allowClassical: true, ok: true, rung: fingerprint.NameClassical, reduced: true},
			{client: lab.FitshakeTCP, rejected: true, fix: true, class: classContent},
		}},
	{cfg: lab.Config{Scenario: lab.Blackhole, MTU: 1280}, ports: []int{lab.PortNginxSmall, lab.PortNginxLong}, fit: []fitWant{
		{client: lab.FitshakeDialer, ok: true, clamp: true},
		{client: lab.FitshakeTCP, ok: true, clamp: true},
	}},
	{cfg: lab.Config{Scenario: lab.Blackhole, MTU: 576}, ports: []int{lab.PortNginxSmall, lab.PortNginxLong}, fit: []fitWant{
		{client: lab.FitshakeDialer, ok: true, clamp: true},
		{client: lab.FitshakeTCP, ok: true, clamp: true},
	}},
}

// TestLabMiddleboxes runs boxes that look like MTU black holes but are
// not (see the package documentation): a split-intolerant inspector that
// drops or resets a flow whose first segment starts a longer hello, and a
// size-intolerant box that resets a hello over N bytes however it is cut;
// and black holes at 1280 and 576. Each lab first checks the box itself:
// fake hello records of chosen sizes (StartRecordServer), stock crypto/tls
// (its default post-quantum hello, ~1.5 KB, fails through every box) and
// stock crypto/tls under GODEBUG=tlsmlkem=0 (a ~300-byte hello completes
// through every middlebox). Then it asserts what fitshake must do: keep
// post-quantum behind a split-intolerant box with a hello that fits one
// segment (fingerprint.NameCompact), fall back to classical only when
// allowed, and say which box refused the hello (pmtu.ClassSplitIntolerant,
// pmtu.ClassContentIntolerant, tlsdial.ErrHelloRejected with a fix).
func TestLabMiddleboxes(t *testing.T) {
	lab.Require(t)
	for _, bc := range boxCases {
		t.Run(bc.cfg.String(), func(t *testing.T) {
			t.Parallel()
			runBox(t, bc)
		})
	}
}

func runBox(t *testing.T, bc boxCase) {
	l := lab.New(t, bc.cfg)
	_, err := l.StartNginx()
	require.NoError(t, err)
	if bc.records != nil {
		_, err = l.StartRecordServer()
		require.NoError(t, err)
	}
	pki, err := l.PKI()
	require.NoError(t, err)
	t.Cleanup(func() { checkCounters(t, l) })
	for _, f := range lab.Families() {
		for _, size := range bc.records {
			t.Run(fmt.Sprintf("%s/box/record-%d", f, size), func(t *testing.T) {
				t.Parallel()
				checkRecord(t, l, f, size)
			})
		}
		for _, port := range bc.ports {
			addr := l.Addr(f, port)
			for _, client := range []string{lab.StockTLS, lab.StockTLSNoMLKEM} {
				t.Run(fmt.Sprintf("%s/%d/%s", f, port, client), func(t *testing.T) {
					t.Parallel()
					checkStock(t, l, f, port, client, lab.DialArgs{Addr: addr, CAFile: pki.CAFile, Timeout: stockBound})
				})
			}
			for _, w := range bc.fit {
				name := w.client
				if w.allowClassical {
					name += "-allow-classical"
				}
				t.Run(fmt.Sprintf("%s/%d/%s", f, port, name), func(t *testing.T) {
					t.Parallel()
					args := lab.DialArgs{Addr: addr, CAFile: pki.CAFile, Timeout: fitshakeBound, AllowClassical: w.allowClassical}
					checkFitshake(t, l, f, w, args)
				})
			}
		}
	}
}

// checkRecord sends a fake hello record of size bytes and checks that the
// box lets it through or refuses it exactly as Config.Refuses says.
func checkRecord(t *testing.T, l *lab.Lab, f lab.Family, size int) {
	cfg := l.Config()
	r, err := l.SendRecord(context.Background(), f, size, time.Second)
	require.NoError(t, err)
	refused := cfg.Refuses(size, lab.MaxSegment(f))
	t.Logf("record %d B over segments of %d B: refused=%v: %+v", size, lab.MaxSegment(f), refused, r)
	switch {
	case !refused:
		assert.True(t, r.OK, "the box should pass a %d-byte record: %+v", size, r)
	case cfg.Reject == lab.RejectReset:
		assert.True(t, r.Reset, "the box should reset a %d-byte record: %+v", size, r)
	default:
		assert.True(t, r.TimedOut, "the box should drop a %d-byte record's flow: %+v", size, r)
	}
}

// checkStock asserts stock crypto/tls: it completes exactly where the box
// and the path carry its flights, and says which group it used.
func checkStock(t *testing.T, l *lab.Lab, f lab.Family, port int, client string, args lab.DialArgs) {
	cfg := l.Config()
	hello, group := goHello(t), "X25519MLKEM768"
	if client == lab.StockTLSNoMLKEM {
		hello, group = noMLKEMHello(t), "X25519"
	}
	flight := flightSmall
	if port == lab.PortNginxLong {
		flight = flightLong
	}
	refused := cfg.Refuses(hello, lab.MaxSegment(f))
	want := !refused && !cfg.Lost(f, lab.Upstream, lab.FirstPacket(f, hello)) &&
		!cfg.Lost(f, lab.Downstream, lab.FirstPacket(f, flight))
	res, err := l.Dial(context.Background(), client, args)
	require.NoError(t, err)
	r := res.Runs[0]
	t.Logf("%s: %d-byte hello: ok=%v group=%s in %v %s", client, hello, r.OK, r.Group, r.Elapsed.Round(10*time.Microsecond), r.Err)
	if !want {
		assert.False(t, r.OK, "%s completed in %v though the box or path refuses its flights", client, r.Elapsed)
		if refused && cfg.Reject == lab.RejectReset {
			assert.Contains(t, r.Err, "connection reset by peer")
		}
		return
	}
	assert.True(t, r.OK, "%s should complete here: %s", client, r.Err)
	assert.Equal(t, group, r.Group)
}

// checkFitshake asserts what a fitshake client must do (w) through the
// lab's box.
func checkFitshake(t *testing.T, l *lab.Lab, f lab.Family, w fitWant, args lab.DialArgs) {
	res, err := l.Dial(context.Background(), w.client, args)
	require.NoError(t, err)
	r := res.Runs[0]
	rep := r.Report
	t.Logf("%s: ok=%v in %v: %s; class %q: %s; err (class %q): %s", w.client, r.OK, r.Elapsed.Round(10*time.Microsecond),
		rep, reportField(rep, func(r *lab.Report) string { return r.Class }),
		reportField(rep, func(r *lab.Report) string { return r.Diagnosis }), r.ErrClass, r.Err)
	if !w.ok {
		require.False(t, r.OK, "%s completed through a box that must refuse it: %s", w.client, rep)
		checkRefusal(t, w, r)
		return
	}
	require.True(t, r.OK, "%s failed: %s (%s)", w.client, r.Err, rep)
	require.NotNil(t, rep)
	if w.rung != "" {
		assert.Equal(t, w.rung, rep.Rung, "%s", rep)
	}
	assert.Equal(t, w.reduced, rep.SecurityReduced, "%s", rep)
	if w.class != "" {
		assert.Equal(t, w.class, rep.Class, "%s — %s", rep, rep.Diagnosis)
	}
	if w.clamp {
		assert.Positive(t, rep.MSS, "no clamp through a black hole: %s", rep)
		assert.LessOrEqual(t, rep.MSS, l.MaxMSS(f), "the clamp does not fit N=%d: %s", l.Config().N(), rep)
	}
}

// checkRefusal asserts how a fitshake dial that must fail failed.
func checkRefusal(t *testing.T, w fitWant, r lab.DialRun) {
	if w.rejected {
		assert.True(t, r.HelloRejected, "the error should match tlsdial.ErrHelloRejected: %s", r.Err)
	}
	if w.class != "" {
		assert.Equal(t, w.class, r.ErrClass, "the error's class: %s", r.Err)
	}
	if w.fix {
		assert.Contains(t, r.Err, w.class, "the error should name the class")
		assert.Regexp(t, fixRE, r.Err, "the error should name a fix")
	}
}

func reportField(r *lab.Report, get func(*lab.Report) string) string {
	if r == nil {
		return ""
	}
	return get(r)
}

// checkCounters asserts that a middlebox condemned flows.
func checkCounters(t *testing.T, l *lab.Lab) {
	drops, err := l.Drops()
	require.NoError(t, err)
	t.Logf("%s: router counters %v", l.Config(), drops)
	switch l.Config().Scenario {
	case lab.SplitIntolerant:
		assert.Positive(t, drops["split hello"], "the box should have condemned split hellos")
	case lab.SizeIntolerant:
		assert.Positive(t, drops["large hello"], "the box should have refused large hellos")
	case lab.Blackhole:
		assert.Positive(t, drops["blackhole"], "the router should have dropped something")
	}
}
