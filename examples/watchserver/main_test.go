package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlswatch"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// get fetches url with client and returns the body.
func get(t *testing.T, client *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", url, b)
	return resp, string(b)
}

// The example on loopback ports, self-signed: one HTTPS request over
// HTTP/2, then the admin port's status JSON counts it, healthy, and its
// metrics show it; the shutdown is clean.
func TestWatchServer(t *testing.T) {
	var stderr syncBuffer
	cfg, err := parseFlags([]string{"-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0"}, &stderr)
	require.NoError(t, err)
	s, err := start(t.Context(), cfg, &stderr)
	require.NoError(t, err)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			s.shutdown()
		}
	})
	assert.Contains(t, stderr.String(), "watchserver: no -cert: serving a self-signed certificate for localhost, 127.0.0.1, ::1")
	assert.Contains(t, stderr.String(), "(self-fix: after 3 connections lost to a black hole, clamp to MSS 1360 (IPv4) / 1340 (IPv6) for a 1400-byte path, then MSS 1240 (IPv4) / 1220 (IPv6) for a 1280-byte path)")

	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // the self-signed certificate
		ForceAttemptHTTP2: true,
	}}
	defer client.CloseIdleConnections()
	resp, page := get(t, client, "https://"+s.addr.String()+"/")
	assert.Equal(t, "HTTP/2.0", resp.Proto)
	assert.Contains(t, page, "Hello: your TLS handshake completed (TLS 1.3, HTTP/2.0)")

	admin := "http://" + s.adminLn.Addr().String()
	_, raw := get(t, http.DefaultClient, admin+"/status.json")
	var st tlswatch.Status
	require.NoError(t, json.Unmarshal([]byte(raw), &st), raw)
	require.Len(t, st.Prefixes, 1, raw)
	p := st.Prefixes[0]
	assert.Equal(t, "127.0.0.0/24", p.Prefix)
	assert.Equal(t, 1, p.Handshakes)
	assert.Equal(t, 1, p.Completed)
	assert.Equal(t, 0, p.Failed)
	assert.Equal(t, tlswatch.Healthy, p.Class)
	assert.False(t, p.Clamped)
	assert.Equal(t, 0, p.MSS)
	assert.Empty(t, p.Fixes)

	_, html := get(t, http.DefaultClient, admin+"/")
	assert.Contains(t, html, "<code>127.0.0.0/24</code>")

	_, metrics := get(t, http.DefaultClient, admin+"/metrics")
	for _, want := range []string{
		// -listen's port was 0: server.port is unknown to the Trace.
		`fitshake_server_handshakes_total{fitshake_handshake_class="healthy",server_address="127.0.0.1",tls_established="true"} 1`,
		`fitshake_server_handshake_duration_seconds_count{server_address="127.0.0.1",tls_established="true"} 1`,
		`# TYPE fitshake_server_handshakes_total counter`,
	} {
		assert.Contains(t, metrics, want+"\n")
	}
	assert.NotContains(t, metrics, "failing_prefixes", "nothing failed: no series")

	// A handshake that never comes does not keep the server from
	// stopping: past the grace, its connection is closed.
	stalled, err := net.Dial("tcp", s.addr.String())
	require.NoError(t, err)
	defer stalled.Close()
	require.Eventually(t, func() bool { return s.watcher.Pending() == 1 }, 5*time.Second, time.Millisecond, "accepted, waiting for its hello")
	stopped = true
	require.NoError(t, s.shutdown())
	n, err := stalled.Read(make([]byte, 1))
	assert.Equal(t, 0, n)
	assert.ErrorIs(t, err, io.EOF, "closed by the server")
	_, err = net.Dial("tcp", s.addr.String())
	assert.Error(t, err, "the HTTPS listener is closed")
	_, err = net.Dial("tcp", s.adminLn.Addr().String())
	assert.Error(t, err, "the admin listener is closed")
	if t.Failed() {
		t.Logf("stderr:\n%s\nmetrics:\n%s", stderr.String(), metrics)
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-cert", "c.pem"}, "-cert and -key go together"},
		{[]string{"-key", "k.pem"}, "-cert and -key go together"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-after", "x"}, "invalid value"},
		{[]string{"-mss", "50"}, "pmtu: invalid MSS 50"},
		{[]string{"-ladder", "1400,x"}, `path MTU "x": not a number`},
		{[]string{"-ladder", "1400,100"}, "pmtu: invalid MTU 100"},
		{[]string{"-ladder", "1400,0"}, "path MTU 0"},
		{[]string{"-mss", "1340", "-ladder", "1400"}, "-mss and -ladder: one or the other"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := parseFlags(tc.args, io.Discard)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
	c, err := parseFlags([]string{"-after", "2", "-mss", "1340", "-window", "1m", "-stall", "1s"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, tlswatch.Policy{After: 2, MSS: 1340, Window: time.Minute}, c.policy)
	assert.Equal(t, time.Second, c.stallAfter)
	c, err = parseFlags([]string{"-ladder", "1400, 1300,1280"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, tlswatch.Policy{Ladder: []int{1400, 1300, 1280}}, c.policy)
}

// The start line says what the self-fix clamps to: each rung of the
// ladder, by family, or the one MSS.
func TestClampText(t *testing.T) {
	for _, tc := range []struct {
		policy tlswatch.Policy
		want   string
	}{
		{tlswatch.Policy{}, "MSS 1360 (IPv4) / 1340 (IPv6) for a 1400-byte path, then MSS 1240 (IPv4) / 1220 (IPv6) for a 1280-byte path"},
		{tlswatch.Policy{Ladder: []int{1300}}, "MSS 1260 (IPv4) / 1240 (IPv6) for a 1300-byte path"},
		{tlswatch.Policy{MSS: 1300}, "MSS 1300"},
	} {
		assert.Equal(t, tc.want, clampText(tc.policy))
	}
	// defaultLadder is tlswatch's: its last rung is the smallest clamp
	// tlswatch's default Policy applies.
	assert.Equal(t, tlswatch.Policy{}.ClampMSS(), pmtu.MSSForMTU(defaultLadder[len(defaultLadder)-1], true))
}

// A server whose listener cannot be made is an error, not a half-started
// server.
func TestStartError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	cfg, err := parseFlags([]string{"-listen", "127.0.0.1:0", "-admin", ln.Addr().String()}, io.Discard)
	require.NoError(t, err)
	_, err = start(context.Background(), cfg, io.Discard)
	assert.ErrorContains(t, err, "address already in use")
}
