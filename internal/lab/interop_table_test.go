//go:build linux && labtable

package lab_test

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fitshake/fitshake/fingerprint"
	"github.com/fitshake/fitshake/internal/lab"
	"github.com/stretchr/testify/require"
)

var (
	flagInteropRuns   = flag.Int("labinterop.runs", 5, "TestLabInteropTable: dials per cell (the median is reported)")
	flagInteropFamily = flag.String("labinterop.family", "ipv4", "TestLabInteropTable: address family (ipv4 or ipv6)")
	flagInteropOut    = flag.String("labinterop.out", "", "TestLabInteropTable: also write the table to this file")
)

// interopTableClients are the table's columns in each lab: fitshake's
// dialers, stock crypto/tls, and the pq-compact hello alone (no legacy
// session ID; a plain dial, no clamp).
var interopTableClients = []struct{ title, client, rung string }{
	{"Dialer", lab.FitshakeDialer, ""},
	{"TCPDialer", lab.FitshakeTCP, ""},
	{"stock Go", lab.StockTLS, ""},
	{"pq-compact alone", lab.FingerprintRung, fingerprint.NameCompact},
}

// interopCell formats a cell of the interop table: "ok 3.1 ms" (median of
// the completed dials), "fail", or "k/n ok 3.1 ms"; and returns the first
// error of a failed dial.
func interopCell(res lab.DialResult) (cell, firstErr string) {
	var times []time.Duration
	for _, r := range res.Runs {
		if r.OK {
			times = append(times, r.Elapsed)
		} else if firstErr == "" {
			firstErr = r.Err
		}
	}
	if len(times) == 0 {
		return "fail", firstErr
	}
	slices.Sort(times)
	med := fmtDur(times[(len(times)-1)/2])
	if len(times) < len(res.Runs) {
		return fmt.Sprintf("%d/%d ok %s", len(times), len(res.Runs), med), firstErr
	}
	return "ok " + med, firstErr
}

// helloSizeOf returns the size of the hello res's first run sent, where
// the run reports it, else that of crypto/tls's.
func helloSizeOf(t testing.TB, res lab.DialResult) int {
	if r := res.Runs[0].Report; r != nil && r.HelloSize > 0 {
		return r.HelloSize
	}
	return goHello(t)
}

// TestLabInteropTable is the interop table: every real server of
// TestLabInterop × {healthy, black hole of 1400 bytes in both directions} ×
// {fitshake Dialer, fitshake TCPDialer + crypto/tls, stock crypto/tls, the
// pq-compact hello alone}:
// ok or fail, and the median time to a completed handshake of
// -labinterop.runs cold dials, in one family. It is built only with the
// labtable tag:
//
//	go test -tags labtable ./internal/lab -run TestLabInteropTable -v -timeout 30m
//
// Cells run one after another, so that no dial is timed against another.
func TestLabInteropTable(t *testing.T) {
	lab.Require(t)
	f := lab.Family(*flagInteropFamily)
	require.Contains(t, lab.Families(), f)
	start := time.Now()
	labs := make([]*lab.Lab, len(interopLabs))
	for i, cfg := range interopLabs {
		labs[i] = startInteropLab(t, cfg)
	}
	var b strings.Builder
	b.WriteString("| server |")
	for _, cfg := range interopLabs {
		for _, c := range interopTableClients {
			fmt.Fprintf(&b, " %s: %s |", cfg, c.title)
		}
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(interopLabs)*len(interopTableClients)) + "\n")
	var notes strings.Builder
	for _, s := range lab.RealServers() {
		fmt.Fprintf(&b, "| %s |", s)
		for _, l := range labs {
			for _, tc := range interopTableClients {
				res := interopDialArgs(t, l, s, f, tc.client, lab.DialArgs{Runs: *flagInteropRuns, Rung: tc.rung})
				cell, err := interopCell(res)
				t.Logf("%s %s %s %s: %s %s", l.Config(), s, f, tc.title, cell, err)
				fmt.Fprintf(&b, " %s |", cell)
				// The failures of a plain dial (stock, one hello alone)
				// where its hello is lost are the lab's point, not news.
				plain := tc.client == lab.StockTLS || tc.client == lab.FingerprintRung
				lost := l.Config().Lost(f, lab.Upstream, lab.FirstPacket(f, helloSizeOf(t, res)))
				if err != "" && (!plain || !lost) {
					fmt.Fprintf(&notes, "- %s, %s, %s: %s\n", l.Config(), s, tc.title, err)
				}
			}
		}
		b.WriteString("\n")
	}
	header := fmt.Sprintf("Interop, %s: median time to a completed TLS handshake of %d cold dials per cell (bounds: stock Go and pq-compact alone %v, fitshake %v; the Dialer and TCPDialer fall back, the others do not).\nMachine: %s, %d CPUs, %s; run took %v.\n\n",
		f, *flagInteropRuns, stockBound, fitshakeBound, cpuModel(), runtime.NumCPU(), runtime.Version(), time.Since(start).Round(time.Second))
	table := header + b.String()
	if notes.Len() > 0 {
		table += "\nErrors (the first of each cell with a failed dial):\n" + notes.String()
	}
	fmt.Print("\n" + table)
	if *flagInteropOut != "" {
		require.NoError(t, os.WriteFile(*flagInteropOut, []byte(table), 0o644))
	}
}
