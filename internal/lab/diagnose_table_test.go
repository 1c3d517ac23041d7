//go:build linux && labtable

package lab_test

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/stretchr/testify/require"
)

var flagDiagOut = flag.String("labdiag.out", "", "TestLabDiagnoseTable: also write the table to this file")

// TestLabDiagnoseTable runs the diagnose probe (probe.Run, what the command
// prints) and the diagnostic page in a headless browser in every scenario
// of TestLabProbe, both families, and prints one markdown table: the
// truth, each one's verdict and limits, and what it cost.
func TestLabDiagnoseTable(t *testing.T) {
	lab.RequireBrowser(t)
	var (
		mu   sync.Mutex
		rows = map[string]string{}
		keys []string
	)
	for _, cfg := range probeLabs() {
		for _, f := range lab.Families() {
			keys = append(keys, cfg.String()+"/"+string(f))
		}
		t.Run(cfg.String(), func(t *testing.T) {
			t.Parallel()
			// A lab each: what one tool teaches the client's kernel (a
			// path MTU from ICMP, kept ten minutes) must not color the
			// other's measurement.
			lp, lb := lab.New(t, cfg), lab.New(t, cfg)
			_, err := lp.StartNginx()
			require.NoError(t, err)
			srv, err := lb.StartDiagPage()
			require.NoError(t, err)
			pki, err := lp.PKI()
			require.NoError(t, err)
			for _, f := range lab.Families() {
				row := diagnoseRow(t, lp, lb, srv, f, pki.CAFile)
				mu.Lock()
				rows[cfg.String()+"/"+string(f)] = row
				mu.Unlock()
			}
		})
	}
	t.Cleanup(func() {
		var b strings.Builder
		b.WriteString("| scenario | family | truth: class, up / down | command: class | up / down | conns | s | page: class | up / down | conns | s |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, k := range keys {
			b.WriteString(rows[k])
		}
		t.Log("\n" + b.String())
		if *flagDiagOut != "" {
			require.NoError(t, os.WriteFile(*flagDiagOut, []byte(b.String()), 0o644))
		}
	})
}

func diagnoseRow(t *testing.T, lp, lb *lab.Lab, srv *lab.DiagPage, f lab.Family, caFile string) string {
	cfg := lp.Config()
	truth := truthOf(cfg, f)
	res := probeIn(t, lp, f, caFile)
	page, conns, secs := pageIn(t, lb, srv, f)
	return fmt.Sprintf("| %s | %s | %s, %d / %d | %s | %d / %d | %d | %.2f | %s | %d / %d | %d | %.1f |\n",
		cfg, f, truth.class, truth.up, truth.down,
		res.Class, res.UpstreamMTU, res.DownstreamMTU, res.Conns, res.Seconds,
		page.Class, page.UpstreamMTU, page.DownstreamMTU, conns, secs)
}
