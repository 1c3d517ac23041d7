//go:build linux && labtable

package lab_test

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/stretchr/testify/require"
)

var (
	flagTableRuns  = flag.Int("labtable.runs", 7, "TestLabTable: dials per cell (the median is reported)")
	flagTableBound = flag.Duration("labtable.bound", 10*time.Second, "TestLabTable: a dial not done by then counts as never")
	flagTableOut   = flag.String("labtable.out", "", "TestLabTable: also write the table to this file")
)

// tableColumn is a client configuration of the table.
type tableColumn struct {
	title   string
	client  string
	probing string // net.ipv4.tcp_mtu_probing in the client namespace
}

var tableColumns = []tableColumn{
	{"fitshake Dialer", lab.FitshakeDialer, "0"},
	{"fitshake TCPDialer + crypto/tls", lab.FitshakeTCP, "0"},
	{"stock Go", lab.StockTLS, "0"},
	{"stock Go, tcp_mtu_probing=1", lab.StockTLS, "1"},
	{"stock Go, tcp_mtu_probing=2", lab.StockTLS, "2"},
}

type tableRow struct {
	cfg    lab.Config
	chains []lab.Chain
	// oneSegment dials with TLS 1.3 only and the server's IP as name (no
	// SNI), so that fitshake's hello is one oversized segment: nothing is
	// acked or SACKed until the kernel's tail-loss probe.
	oneSegment bool
}

var tableRows = []tableRow{
	{lab.Config{Scenario: lab.Blackhole, Direction: lab.Both}, []lab.Chain{lab.Small, lab.Long}, false},
	{lab.Config{Scenario: lab.Blackhole, Direction: lab.Upstream}, []lab.Chain{lab.Small}, false},
	{lab.Config{Scenario: lab.Blackhole, Direction: lab.Upstream}, []lab.Chain{lab.Small}, true},
	{lab.Config{Scenario: lab.Blackhole, Direction: lab.Downstream}, []lab.Chain{lab.Long}, false},
	// A router that resets large packets instead of dropping them.
	{lab.Config{Scenario: lab.Reset, Direction: lab.Upstream}, []lab.Chain{lab.Small}, false},
	{lab.Config{Scenario: lab.MTUICMPBlocked}, []lab.Chain{lab.Small, lab.Long}, false},
	{lab.Config{Scenario: lab.FragmentsDropped}, []lab.Chain{lab.Small, lab.Long}, false},
	{lab.Config{Scenario: lab.Healthy}, []lab.Chain{lab.Small, lab.Long}, false},
}

// cell is one median.
type cell struct {
	done  int
	runs  int
	times []time.Duration // completed ones
}

func (c cell) String() string {
	if c.runs == 0 {
		return "–"
	}
	all := slices.Clone(c.times)
	slices.Sort(all)
	// Runs that never completed sort last.
	if 2*c.done <= c.runs {
		if c.done == 0 {
			return "never"
		}
		return fmt.Sprintf("never (%d/%d)", c.done, c.runs)
	}
	med := all[(c.runs-1)/2]
	s := fmtDur(med)
	if c.done < c.runs {
		s += fmt.Sprintf(" (%d/%d)", c.done, c.runs)
	}
	return s
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// TestLabTable is the side-by-side benchmark: time to a completed TLS
// handshake, median of -labtable.runs cold dials, for fitshake's two
// dialers, stock crypto/tls, and stock crypto/tls with the kernel's own
// remedy (net.ipv4.tcp_mtu_probing=1 and =2 in the client namespace; they
// cover IPv6 TCP too), per scenario, family and certificate. It is built
// only with the labtable tag, so that go test ./... never runs (or skips)
// it:
//
//	go test -tags labtable ./internal/lab -run TestLabTable -v -timeout 30m
//
// The labs are built and warmed up first, then measured in parallel;
// within a lab, cells run one after another (the sysctl is per namespace).
// A cell whose first dial hits the bound makes its other dials at once.
func TestLabTable(t *testing.T) {
	lab.Require(t)
	runTable(t, tableRows, tableColumns)
}

// middleboxColumns are the clients of TestLabMiddleboxTable.
var middleboxColumns = []tableColumn{
	{"stock Go", lab.StockTLS, "0"},
	{"stock Go, GODEBUG=tlsmlkem=0", lab.StockTLSNoMLKEM, "0"},
	{"fitshake Dialer", lab.FitshakeDialer, "0"},
	{"fitshake TCPDialer + crypto/tls", lab.FitshakeTCP, "0"},
}

// middleboxRows are the labs of TestLabMiddleboxes.
var middleboxRows = []tableRow{
	{lab.Config{Scenario: lab.SplitIntolerant, Reject: lab.RejectDrop}, []lab.Chain{lab.Small}, false},
	{lab.Config{Scenario: lab.SplitIntolerant, Reject: lab.RejectReset}, []lab.Chain{lab.Small}, false},
	{lab.Config{Scenario: lab.SizeIntolerant, HelloLimit: 1400}, []lab.Chain{lab.Small}, false},
	{lab.Config{Scenario: lab.SizeIntolerant, HelloLimit: 1450}, []lab.Chain{lab.Small}, false},
	{lab.Config{Scenario: lab.SizeIntolerant, HelloLimit: 1000}, []lab.Chain{lab.Small}, false},
	{lab.Config{Scenario: lab.Blackhole, MTU: 1280}, []lab.Chain{lab.Small, lab.Long}, false},
	{lab.Config{Scenario: lab.Blackhole, MTU: 576}, []lab.Chain{lab.Small, lab.Long}, false},
}

// TestLabMiddleboxTable is TestLabTable for the boxes that look like MTU
// black holes (split- and size-intolerant) and for black holes at 1280
// and 576, with stock crypto/tls also under GODEBUG=tlsmlkem=0 (a ~300-byte
// hello) and without the kernel's remedies:
//
//	go test -tags labtable ./internal/lab -run TestLabMiddleboxTable -v -timeout 30m
func TestLabMiddleboxTable(t *testing.T) {
	lab.Require(t)
	runTable(t, middleboxRows, middleboxColumns)
}

// tableKey names a cell.
type tableKey struct {
	row    int
	fam    lab.Family
	chain  lab.Chain
	column int
}

// runTable measures every cell of rows × families × chains × cols, then
// prints the table (and writes it to -labtable.out).
func runTable(t *testing.T, rows []tableRow, cols []tableColumn) {
	start := time.Now()
	labs := openTableLabs(t, rows)
	var (
		mu      sync.Mutex
		fitMu   sync.Mutex
		results = map[tableKey]cell{}
	)
	t.Run("labs", func(t *testing.T) {
		for ri, row := range rows {
			t.Run(row.cfg.String(), func(t *testing.T) {
				t.Parallel()
				measureRow(t, labs[ri], row, cols, &fitMu, func(f lab.Family, ch lab.Chain, ci int, c cell) {
					mu.Lock()
					results[tableKey{ri, f, ch, ci}] = c
					mu.Unlock()
				})
			})
		}
	})
	if t.Failed() {
		return
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	header := fmt.Sprintf("Median time to a completed TLS handshake, %d cold dials per cell, bound %v (\"never\": the median dial did not complete; (k/n): only k of n did).\nMachine: %s, Linux %s, %d CPUs, %s; nginx in the server namespace; run took %v.\n\n",
		*flagTableRuns, *flagTableBound, cpuModel(), strings.TrimSpace(string(kernel)), runtime.NumCPU(), runtime.Version(), time.Since(start).Round(time.Second))
	table := header + formatTable(rows, cols, results)
	fmt.Print("\n" + table)
	if *flagTableOut != "" {
		require.NoError(t, os.WriteFile(*flagTableOut, []byte(table), 0o644))
	}
}

// openTableLabs builds and warms up every row's lab before any measures,
// so that no cell pays for another lab's start-up.
func openTableLabs(t *testing.T, rows []tableRow) []*lab.Lab {
	labs := make([]*lab.Lab, len(rows))
	for ri, row := range rows {
		l := lab.New(t, row.cfg)
		_, err := l.StartNginx()
		require.NoError(t, err)
		pki, err := l.PKI()
		require.NoError(t, err)
		for _, f := range lab.Families() {
			for _, port := range []int{lab.PortNginxSmall, lab.PortNginxLong} {
				_, err := l.Dial(context.Background(), lab.FitshakeDialer, lab.DialArgs{
					Addr: l.Addr(f, port), CAFile: pki.CAFile, ClearDF: l.Config().ClearDF()})
				require.NoError(t, err)
			}
		}
		labs[ri] = l
	}
	return labs
}

func chainPort(ch lab.Chain) int {
	if ch == lab.Long {
		return lab.PortNginxLong
	}
	return lab.PortNginxSmall
}

// measureRow measures a row's cells one after another and hands each to
// put. Cells of every client but stock crypto/tls hold fitMu, so that they
// run one at a time across the labs and their milliseconds are not
// measured against another lab's handshakes; stock cells mostly wait out
// their bound and run freely.
func measureRow(t *testing.T, l *lab.Lab, row tableRow, cols []tableColumn, fitMu *sync.Mutex, put func(lab.Family, lab.Chain, int, cell)) {
	pki, err := l.PKI()
	require.NoError(t, err)
	for _, f := range lab.Families() {
		for _, ch := range row.chains {
			for ci, col := range cols {
				require.NoError(t, l.Sysctl(lab.Client, "net.ipv4.tcp_mtu_probing", col.probing))
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*flagTableRuns+2)**flagTableBound)
				args := lab.DialArgs{
					Addr: l.Addr(f, chainPort(ch)), CAFile: pki.CAFile, Timeout: *flagTableBound,
					ClearDF: l.Config().ClearDF(), Runs: *flagTableRuns, Parallel: true,
				}
				if row.oneSegment {
					args.ServerName = l.IP(lab.Server, f).String()
					args.MinVersion = tls.VersionTLS13
				}
				serial := col.client != lab.StockTLS
				if serial {
					fitMu.Lock()
				}
				res, err := l.Dial(ctx, col.client, args)
				if serial {
					fitMu.Unlock()
				}
				cancel()
				require.NoError(t, err)
				c := cell{runs: len(res.Runs)}
				for _, r := range res.Runs {
					if r.OK {
						c.done++
						c.times = append(c.times, r.Elapsed)
					}
				}
				t.Logf("%s %s %s | %s: %s", row.cfg, f, ch, col.title, c)
				put(f, ch, ci, c)
			}
		}
	}
}

// formatTable renders the results as a Markdown table.
func formatTable(rows []tableRow, cols []tableColumn, results map[tableKey]cell) string {
	var b strings.Builder
	b.WriteString("| scenario | family | server certificate |")
	for _, col := range cols {
		b.WriteString(" " + col.title + " |")
	}
	b.WriteString("\n|---|---|---|")
	for range cols {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for ri, row := range rows {
		for _, f := range lab.Families() {
			for _, ch := range row.chains {
				certName := "small (ECDSA, :443)"
				if row.oneSegment {
					certName = "small (ECDSA, :443); hello in one segment (TLS 1.3 only, no SNI)"
				}
				if ch == lab.Long {
					certName = "long chain (RSA-4096 ×3, :8443)"
				}
				fmt.Fprintf(&b, "| %s | %s | %s |", row.cfg, map[lab.Family]string{lab.IPv4: "IPv4", lab.IPv6: "IPv6"}[f], certName)
				for ci := range cols {
					fmt.Fprintf(&b, " %s |", results[tableKey{ri, f, ch, ci}])
				}
				b.WriteString("\n")
			}
		}
	}
	return b.String()
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
