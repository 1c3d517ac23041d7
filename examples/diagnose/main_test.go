package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBadInput(t *testing.T) {
	for _, args := range [][]string{{}, {"a", "b"}, {"-4", "-6", "example.com"}, {"-nosuchflag", "x"}, {":443"}} {
		var out, errb bytes.Buffer
		assert.Equal(t, 2, run(args, &out, &errb), "%q", args)
		assert.Empty(t, out.String())
		assert.NotEmpty(t, errb.String(), "%q says why", args)
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	var out, errb bytes.Buffer
	assert.Equal(t, 2, run([]string{"-q", addr}, &out, &errb))
	assert.Contains(t, errb.String(), "cannot connect")
}

// A healthy server on loopback: exit 0, the JSON fields the issue names,
// progress on stderr only.
func TestHealthyJSON(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")
	var out, errb bytes.Buffer
	code := run([]string{"-json", "-4", addr}, &out, &errb)
	var res map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &res), "stdout is one JSON object: %s", out.String())
	assert.Equal(t, 0, code, "%s", out.String())
	for _, k := range []string{"healthy", "upstream_mtu", "downstream_mtu", "class", "fixes"} {
		assert.Contains(t, res, k)
	}
	assert.Equal(t, true, res["healthy"])
	assert.Equal(t, "healthy", res["class"])
	assert.Contains(t, errb.String(), "] crypto/tls handshake", "progress on stderr")
}

func TestTarget(t *testing.T) {
	for _, tt := range []struct{ in, want, network string }{
		{"example.com", "example.com:443", "tcp"},
		{"example.com:8443", "example.com:8443", "tcp"},
		{"2001:db8::1", "[2001:db8::1]:443", "tcp"},
		{"[2001:db8::1]", "[2001:db8::1]:443", "tcp"},
	} {
		addr, network, err := target([]string{tt.in}, false, false)
		require.NoError(t, err)
		assert.Equal(t, tt.want, addr)
		assert.Equal(t, tt.network, network)
	}
}

// TestCannotMeasure runs diagnose through pmtutest's simulator, a
// userspace proxy on loopback that black-holes packets over 1400 bytes:
// exit 2, a sentence saying why, in the JSON too, and no limit reported.
func TestCannotMeasure(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	p := pmtutest.NewProxy(t, srv.Listener.Addr().String(), 1400)
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"summary", []string{"-q", p.Addr()}},
		{"json", []string{"-q", "-json", p.Addr()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			t0 := time.Now()
			code := run(tt.args, &out, &errb)
			assert.Equal(t, 2, code, "%s", out.String())
			assert.Less(t, time.Since(t0), 10*time.Second, "the handshake's 2 s, not a search")
			assert.Contains(t, errb.String(), "diagnose: probe: cannot measure: 127.0.0.1 is on this host")
			if tt.name == "summary" {
				assert.Contains(t, out.String(), "CANNOT MEASURE: 127.0.0.1 is on this host")
				assert.Contains(t, out.String(), "packet limits: not measured")
				return
			}
			var res map[string]any
			require.NoError(t, json.Unmarshal(out.Bytes(), &res), "%s", out.String())
			assert.Equal(t, "cannot-measure", res["class"])
			assert.Contains(t, res["cannot_measure"], "a proxy that terminates TCP")
			assert.EqualValues(t, 0, res["upstream_mtu"])
			assert.EqualValues(t, 0, res["downstream_mtu"])
			assert.EqualValues(t, 2, res["conns"])
		})
	}
}
