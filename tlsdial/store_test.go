package tlsdial_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// storeChild is what TestStoreChildProcess reports.
type storeChild struct {
	Elapsed   time.Duration
	FromCache bool
	Attempts  int
	FirstMSS  int
	MSS       int
	Report    string
}

// The child of TestStoreAcrossProcesses: one dial to TLSDIAL_STORE_ADDR
// with a file-backed cache, its result as JSON on stdout.
func TestStoreChildProcess(t *testing.T) {
	path := os.Getenv("TLSDIAL_STORE_PATH")
	if path == "" {
		t.Skip("run by TestStoreAcrossProcesses")
	}
	der, err := os.ReadFile(os.Getenv("TLSDIAL_STORE_CA"))
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	cache, err := pmtu.OpenFileCache(path, nil)
	require.NoError(t, err)
	defer cache.Close()
	d := &tlsdial.Dialer{Cache: cache, Config: &tls.Config{RootCAs: pool, ServerName: serverName}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t0 := time.Now()
	c, err := d.DialContext(ctx, "tcp", os.Getenv("TLSDIAL_STORE_ADDR"))
	elapsed := time.Since(t0)
	require.NoError(t, err)
	defer c.Close()
	r := c.(*tlsdial.Conn).Report()
	out, _ := json.Marshal(storeChild{Elapsed: elapsed, FromCache: r.FromCache, Attempts: len(r.Attempts),
		FirstMSS: r.Attempts[0].MSS, MSS: r.MSS, Report: r.String()})
	os.Stdout.Write(append([]byte("\nSTORE "), append(out, '\n')...))
}

// Two processes one after the other behind a silent box (pmtutest
// acknowledges everything itself, so TCP_INFO sees nothing): the first
// waits out the stall window and learns a clamp; the second starts
// clamped, from the store, in one attempt. Times are logged, not
// asserted: the kernel lab measures them (TestLabStore).
func TestStoreAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	srv := startServer(t, 0)
	hole := blackHole(t, srv.addr, 1400, pmtutest.Both)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.der")
	require.NoError(t, os.WriteFile(caFile, srv.ca.Cert.Raw, 0o600))
	store := filepath.Join(dir, "paths.json")
	child := func(addr, path string) storeChild {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestStoreChildProcess$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "TLSDIAL_STORE_PATH="+path, "TLSDIAL_STORE_CA="+caFile, "TLSDIAL_STORE_ADDR="+addr)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		i := bytes.LastIndex(out, []byte("\nSTORE "))
		require.GreaterOrEqual(t, i, 0, "%s", out)
		line, _, _ := bytes.Cut(out[i+len("\nSTORE "):], []byte("\n"))
		var r storeChild
		require.NoError(t, json.Unmarshal(line, &r), "%s", out)
		return r
	}
	healthy := child(srv.addr, filepath.Join(dir, "healthy.json"))
	first := child(hole, store)
	second := child(hole, store)
	t.Logf("healthy: %v: %s", healthy.Elapsed, healthy.Report)
	t.Logf("first behind the box: %v: %s", first.Elapsed, first.Report)
	t.Logf("second behind the box: %v: %s", second.Elapsed, second.Report)
	require.NotZero(t, first.MSS, "the first learns a clamp: %s", first.Report)
	assert.False(t, first.FromCache)
	assert.True(t, second.FromCache, "%s", second.Report)
	assert.Equal(t, 1, second.Attempts, "%s", second.Report)
	assert.Equal(t, first.MSS, second.FirstMSS, "%s", second.Report)
}
