package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
