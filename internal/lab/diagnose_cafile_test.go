//go:build linux

package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/fitshake/fitshake/probe"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLabDiagnoseCAFile runs the diagnose command as a user would, built
// from examples/diagnose and run in the client namespace, against nginx's
// long chain from the lab's private CA, named by an https:// URL with the
// server's IP address: with -cafile (the CA's PEM file) and -servername,
// the verdict is the one TestLabProbe expects of probe.Run given the roots
// in a tls.Config, the verdict of a server with a public CA; without
// -cafile, the same path verdict and limits, and the certificate reported
// as not trusted, with the fix naming -cafile (exit 1). A healthy path and
// a black hole both ways (ICMP blocked), on both families.
func TestLabDiagnoseCAFile(t *testing.T) {
	lab.Require(t)
	bin := buildDiagnose(t)
	for _, cfg := range []lab.Config{{Scenario: lab.Healthy}, {Scenario: lab.MTUICMPBlocked, MTU: 1400}} {
		t.Run(cfg.String(), func(t *testing.T) {
			t.Parallel()
			l := lab.New(t, cfg)
			_, err := l.StartNginx()
			require.NoError(t, err)
			pki, err := l.PKI()
			require.NoError(t, err)
			for _, f := range lab.Families() {
				t.Run(string(f), func(t *testing.T) {
					truth := truthOf(l.Config(), f)
					url := "https://" + l.Addr(f, lab.PortNginxLong) + "/index.html"
					family := map[lab.Family]string{lab.IPv4: "-4", lab.IPv6: "-6"}[f]

					res, code := diagnoseIn(t, l, bin, family, "-cafile", pki.CAFile, "-servername", lab.ServerName, url)
					checkProbe(t, truth, res.Result)
					assert.Empty(t, res.Certificate, "verified with -cafile")
					assert.Equal(t, map[bool]int{true: 0, false: 1}[truth.healthy], code)

					res, code = diagnoseIn(t, l, bin, family, "-servername", lab.ServerName, url)
					assert.Equal(t, 1, code, "a certificate not trusted is a problem found")
					assert.Equal(t, truth.class, res.Class, "the path verdict stands")
					assert.Equal(t, truth.healthy, res.Healthy)
					assert.InDelta(t, truth.up, res.UpstreamMTU, 8, "upstream")
					assert.InDelta(t, truth.down, res.DownstreamMTU, 8, "downstream")
					assert.Contains(t, res.Certificate, "x509: certificate signed by unknown authority")
					assert.Contains(t, res.Fitshake, "ok up to the certificate")
					assert.NotContains(t, res.Fitshake, "MSS 0")
					assert.Contains(t, strings.Join(res.Fixes, "\n"), "diagnose -cafile FILE")
				})
			}
		})
	}
}

// diagnoseOutput is the JSON object of diagnose -json.
type diagnoseOutput struct {
	probe.Result
	Error string `json:"error"`
}

// buildDiagnose builds the diagnose command into a temporary directory.
func buildDiagnose(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build examples/diagnose:", err)
	}
	bin := filepath.Join(t.TempDir(), "diagnose")
	out, err := exec.Command(gobin, "build", "-o", bin, "github.com/fitshake/fitshake/examples/diagnose").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// diagnoseIn runs diagnose -json -q with args in the client namespace and
// returns its JSON object and exit status.
func diagnoseIn(t *testing.T, l *lab.Lab, bin string, args ...string) (diagnoseOutput, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := l.Command(ctx, lab.Client, bin, append([]string{"-json", "-q"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	var res diagnoseOutput
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res), "stdout: %s\nstderr: %s", stdout.String(), stderr.String())
	require.Empty(t, res.Error, "stderr: %s", stderr.String())
	t.Logf("diagnose %s: exit %d\n%s%s", strings.Join(args, " "), code, res.String(), stderr.String())
	return res, code
}
