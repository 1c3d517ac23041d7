package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/testcert"
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

// A healthy server on loopback, its certificate given with -cafile: exit
// 0, the JSON fields the issue names, progress on stderr only.
func TestHealthyJSON(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	addr := strings.TrimPrefix(srv.URL, "https://")
	var out, errb bytes.Buffer
	code := run([]string{"-json", "-4", "-cafile", caFile, addr}, &out, &errb)
	var res map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &res), "stdout is one JSON object: %s", out.String())
	assert.Equal(t, 0, code, "%s", out.String())
	for _, k := range []string{"healthy", "upstream_mtu", "downstream_mtu", "class", "fixes"} {
		assert.Contains(t, res, k)
	}
	assert.Equal(t, true, res["healthy"])
	assert.Equal(t, "healthy", res["class"])
	assert.NotContains(t, res, "certificate")
	assert.NotContains(t, res, "error")
	assert.Contains(t, errb.String(), "] crypto/tls handshake", "progress on stderr")
}

func TestTarget(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
	}{
		{"host", "example.com", "example.com:443", ""},
		{"host and port", "example.com:8443", "example.com:8443", ""},
		{"IPv4", "192.0.2.1", "192.0.2.1:443", ""},
		{"bare IPv6", "2001:db8::1", "[2001:db8::1]:443", ""},
		{"bracketed IPv6", "[2001:db8::1]", "[2001:db8::1]:443", ""},
		{"IPv6 and port", "[2001:db8::1]:8443", "[2001:db8::1]:8443", ""},
		{"URL", "https://example.com", "example.com:443", ""},
		{"URL with path", "https://example.com/a/b?c=d#e", "example.com:443", ""},
		{"URL with port", "https://example.com:8443/", "example.com:8443", ""},
		{"URL, scheme in capitals", "HTTPS://example.com/", "example.com:443", ""},
		{"URL with user", "https://me@example.com/", "example.com:443", ""},
		{"URL, IPv6", "https://[2001:db8::1]/x", "[2001:db8::1]:443", ""},
		{"URL, IPv6 and port", "https://[2001:db8::1]:8443/x", "[2001:db8::1]:8443", ""},
		{"host and path, no scheme", "example.com/a", "example.com:443", ""},
		{"http", "http://example.com/", "", `scheme "http" not supported`},
		{"ftp", "ftp://example.com", "", `scheme "ftp" not supported`},
		{"URL without host", "https:///a", "", "no host"},
		{"no host", ":443", "", "no host"},
		{"empty port", "example.com:", "", "bad port"},
		{"port 0", "example.com:0", "", "bad port"},
		{"port too large", "https://example.com:65536/", "", "bad port"},
		{"named port", "example.com:https", "", "bad port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := target(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr string
	}{
		{"defaults", []string{"example.com"}, config{network: "tcp", timeout: 30 * time.Second, addr: "example.com:443"}, ""},
		{"every flag", []string{"-json", "-6", "-q", "-timeout", "5s", "-cafile", "ca.pem", "-servername", "db.internal", "https://[2001:db8::1]:8443/"},
			config{asJSON: true, network: "tcp6", quiet: true, timeout: 5 * time.Second, caFile: "ca.pem", serverName: "db.internal", addr: "[2001:db8::1]:8443"}, ""},
		{"-4", []string{"-4", "192.0.2.1"}, config{network: "tcp4", timeout: 30 * time.Second, addr: "192.0.2.1:443"}, ""},
		{"-4 and -6", []string{"-4", "-6", "example.com"}, config{}, "exclude each other"},
		{"no target", []string{"-json"}, config{}, "want exactly one target"},
		{"two targets", []string{"a", "b"}, config{}, "want exactly one target"},
		{"unknown flag", []string{"-nosuchflag", "x"}, config{}, "flag provided but not defined"},
		{"no timeout", []string{"-timeout", "0s", "x"}, config{}, "-timeout must be positive"},
		{"bad scheme", []string{"http://example.com"}, config{}, "not supported"},
		{"help", []string{"-h"}, config{}, "help requested"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errb bytes.Buffer
			got, _, err := parseArgs(tt.args, &errb)
			assert.Empty(t, errb.String(), "the caller prints errors and the usage")
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, *got)
		})
	}
}

func TestWantsJSON(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{[]string{"-json", "x"}, true},
		{[]string{"--json", "x"}, true},
		{[]string{"-nosuch", "-json=true"}, true},
		{[]string{"-json=false", "x"}, false},
		{[]string{"-jsonx", "x"}, false},
		{[]string{"--", "-json"}, false},
		{[]string{"json"}, false},
		{[]string{}, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, wantsJSON(tt.args), "%q", tt.args)
	}
}

// TestJSONAlways: with -json, every failure to diagnose is still one JSON
// object on stdout, with the error, and exit status 2.
func TestJSONAlways(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	ln.Close()
	empty := filepath.Join(t.TempDir(), "empty.pem")
	require.NoError(t, os.WriteFile(empty, []byte("not a certificate"), 0o600))
	tests := []struct {
		name      string
		args      []string
		wantError string
	}{
		{"no target", []string{"-json"}, "want exactly one target"},
		{"bad flag after -json", []string{"-json", "-nosuchflag", "x"}, "flag provided but not defined"},
		{"bad flag before -json", []string{"-nosuchflag", "-json", "x"}, "flag provided but not defined"},
		{"-4 and -6", []string{"-json", "-4", "-6", "x"}, "exclude each other"},
		{"http URL", []string{"-json", "http://example.com/"}, "not supported"},
		{"missing CA file", []string{"-json", "-cafile", filepath.Join(t.TempDir(), "none.pem"), "example.com"}, "-cafile"},
		{"CA file without certificates", []string{"-json", "-cafile", empty, "example.com"}, "no PEM certificate"},
		{"connection refused", []string{"-json", "-q", closed}, "cannot connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			assert.Equal(t, 2, run(tt.args, &out, &errb))
			var res map[string]any
			require.NoError(t, json.Unmarshal(out.Bytes(), &res), "stdout is one JSON object: %q", out.String())
			assert.Contains(t, res["error"], tt.wantError)
			assert.Contains(t, errb.String(), tt.wantError, "and stderr says it too")
		})
	}
}

// TestCertificate diagnoses a loopback server whose certificate comes from
// a private CA, as a user would: without -cafile the path is fine and the
// certificate is reported as not trusted (exit 1); with the CA's PEM file
// the verdict is a plain healthy one (exit 0), whatever the form of the
// target; a wrong -servername is a certificate verdict again.
func TestCertificate(t *testing.T) {
	ca, err := testcert.NewCA()
	require.NoError(t, err)
	cert, err := ca.Issue([]string{"private.test"}, 0) // no IP: the name comes from -servername
	require.NoError(t, err)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o600))
	ln := testcert.Listen(t)
	tlsLn := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	testcert.Serve(t, tlsLn, func(c net.Conn, _ func(net.Conn)) { _ = c.(*tls.Conn).Handshake() })
	addr := ln.Addr().String()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantCert string // in the certificate field; "" for none
		wantFix  string
	}{
		{"no -cafile", []string{"-servername", "private.test", addr}, 1, "unknown authority", "-cafile FILE"},
		{"-cafile", []string{"-cafile", caFile, "-servername", "private.test", addr}, 0, "", ""},
		{"-cafile, URL", []string{"-cafile", caFile, "-servername", "private.test", "https://" + addr + "/some/path?q=1"}, 0, "", ""},
		{"-cafile, no -servername", []string{"-cafile", caFile, addr}, 1, "for 127.0.0.1", "-servername NAME"},
		{"-cafile, wrong -servername", []string{"-cafile", caFile, "-servername", "other.test", addr}, 1, "not other.test", "-servername NAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, asJSON := range []bool{false, true} {
				args := append([]string{"-q", "-json=" + strconv.FormatBool(asJSON)}, tt.args...)
				var out, errb bytes.Buffer
				code := run(args, &out, &errb)
				assert.Equal(t, tt.wantCode, code, "%s\n%s", out.String(), errb.String())
				if !asJSON {
					if tt.wantCert == "" {
						assert.NotContains(t, out.String(), "CERTIFICATE")
						assert.Empty(t, errb.String())
						continue
					}
					assert.Contains(t, out.String(), "CERTIFICATE NOT TRUSTED: ")
					assert.Contains(t, out.String(), tt.wantCert)
					assert.Contains(t, out.String(), tt.wantFix)
					assert.Contains(t, errb.String(), "certificate does not verify")
					continue
				}
				var res map[string]any
				require.NoError(t, json.Unmarshal(out.Bytes(), &res), "%s", out.String())
				assert.Equal(t, "healthy", res["class"], "the path is healthy either way")
				assert.Equal(t, true, res["healthy"])
				assert.NotContains(t, res, "error")
				if tt.wantCert == "" {
					assert.NotContains(t, res, "certificate")
					assert.Equal(t, "ok", res["handshake"])
					assert.Equal(t, "ok", res["fitshake"])
					assert.Empty(t, res["fixes"])
					continue
				}
				assert.Contains(t, res["certificate"], tt.wantCert)
				assert.Contains(t, res["handshake"], "ok up to the certificate")
				assert.Contains(t, res["fitshake"], "ok up to the certificate")
				assert.NotContains(t, res["fitshake"], "MSS 0")
				assert.Contains(t, fmt.Sprint(res["fixes"]), tt.wantFix)
			}
		})
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
