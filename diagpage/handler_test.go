package diagpage

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/verdict"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawGet sends req as is on a fresh connection to srv and returns the
// whole response (the server closes the connection).
func rawGet(t *testing.T, srv *httptest.Server, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.WriteString(c, req)
	require.NoError(t, err)
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	return string(b)
}

func getRequest(srv *httptest.Server, target string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: " + srv.Listener.Addr().String() +
		"\r\nUser-Agent: diagpage-test\r\nAccept: */*\r\nConnection: close\r\n\r\n"
}

// splitResponse parses a raw response into its head and body.
func splitResponse(t *testing.T, raw string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	require.NoError(t, err, "%q", raw)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func TestPage(t *testing.T) {
	srv := httptest.NewServer(&Handler{})
	defer srv.Close()
	for _, target := range []string{"/", "/fitshake/", "/anything"} {
		resp, body := splitResponse(t, rawGet(t, srv, getRequest(srv, target)))
		assert.Equal(t, 200, resp.StatusCode)
		assert.True(t, resp.Close, "Connection: close")
		assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
		assert.Contains(t, body, "<title>fitshake: measuring</title>")
		assert.Contains(t, body, `id="result"`)
		assert.NotContains(t, body, "{{CONFIG}}")
		// No external resources: no src attributes, no links but the
		// empty data: icon.
		assert.NotRegexp(t, `\bsrc=`, body)
		assert.Regexp(t, `<link rel="icon" href="data:,">`, body)
		assert.Len(t, regexp.MustCompile(`href=`).FindAllString(body, -1), 1)
		cfg := regexp.MustCompile(`(?s)<script type="application/json" id="cfg">(.*?)</script>`).FindStringSubmatch(body)
		require.Len(t, cfg, 2)
		var pc pageConfig
		require.NoError(t, json.Unmarshal([]byte(cfg[1]), &pc))
		assert.Equal(t, platform.tcpInfo, pc.TCPInfo)
		assert.Equal(t, maxPacket, pc.Max)
		assert.Equal(t, MaxAckTimeout.Milliseconds(), pc.AckMaxMS)
	}
}

// TestUp checks an upstream probe's answer against the request's real
// size: on loopback, IPv4 with timestamps, a packet is the request plus
// 52 bytes.
func TestUp(t *testing.T) {
	if !platform.tcpInfo {
		t.Skip("no TCP_INFO here")
	}
	srv := httptest.NewServer(&Handler{})
	defer srv.Close()
	for _, pad := range []int{0, 100, 1000} {
		req := getRequest(srv, "/up?n=0123456789ab&p="+strings.Repeat("a", pad))
		resp, body := splitResponse(t, rawGet(t, srv, req))
		require.Equal(t, 200, resp.StatusCode, body)
		var got upResult
		require.NoError(t, json.Unmarshal([]byte(body), &got))
		assert.Equal(t, upResult{Size: len(req) + 52, Max: len(req) + 52, Segs: 1}, got, "pad %d", pad)
	}
}

// TestRequestLen checks the length rebuilt from a parsed request (used
// without TCP_INFO, and for the byte budget) against the bytes sent.
func TestRequestLen(t *testing.T) {
	got := make(chan int, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- requestLen(r)
	}))
	defer srv.Close()
	req := "GET /up?n=0123456789ab&p=aaaa HTTP/1.1\r\nHost: " + srv.Listener.Addr().String() +
		"\r\nConnection: keep-alive\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: */*\r\nReferer: http://x/\r\nAccept-Encoding: gzip, deflate\r\nAccept-Language: en-US,en;q=0.9\r\n\r\n"
	rawGet(t, srv, strings.Replace(req, "keep-alive", "close", 1))
	assert.Equal(t, len(req)-len("keep-alive")+len("close"), <-got)
}

func TestDown(t *testing.T) {
	srv := httptest.NewServer(&Handler{})
	defer srv.Close()
	for _, size := range []int{minDown, 576, 1280, 1400, 1499, maxPacket} {
		raw := rawGet(t, srv, getRequest(srv, "/down?n=0123456789ab&s="+strconv.Itoa(size)))
		resp, body := splitResponse(t, raw)
		require.Equal(t, 200, resp.StatusCode, body)
		at := strings.LastIndexByte(body, '{')
		require.Positive(t, at)
		var tail downTail
		require.NoError(t, json.Unmarshal([]byte(body[at:]), &tail))
		want := downTail{OK: true, Max: size, Judged: platform.tcpInfo}
		assert.Equal(t, want, tail, "size %d", size)
		if platform.tcpInfo {
			// The first segment (head and padding) is one packet of
			// size bytes: 52 of them IPv4 and TCP headers.
			assert.Equal(t, size-52, len(raw)-(len(body)-at), "size %d", size)
		}
	}
	for _, bad := range []string{"", "x", "299", "1501"} {
		resp, _ := splitResponse(t, rawGet(t, srv, getRequest(srv, "/down?s="+bad)))
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "s=%q", bad)
	}
}

func TestProbeHead(t *testing.T) {
	for first := minDown - 72; first <= maxPacket-52; first++ {
		b, tail := probeHead(first)
		require.Len(t, b, first)
		require.Contains(t, []int{tailLen, tailLen + 1}, tail)
		enc := encodeTail(downTail{OK: true, Max: 1500, Split: true, Judged: true}, tail)
		require.Len(t, enc, tail)
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(b)+string(enc))), nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err, "first %d", first)
		assert.True(t, strings.HasSuffix(string(body), string(enc)))
	}
	b, _ := probeHead(10)
	assert.Nil(t, b)
}

func TestVerdictEndpoint(t *testing.T) {
	srv := httptest.NewServer(&Handler{})
	defer srv.Close()
	resp, body := splitResponse(t, rawGet(t, srv, getRequest(srv, "/verdict?up=1396&us=lost&down=1500&ds=whole")))
	require.Equal(t, 200, resp.StatusCode)
	var got struct {
		Summary  verdict.Summary
		Headline string
		Lines    []string
	}
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	want := verdict.Summary{UpstreamMTU: 1396, DownstreamMTU: 1500, Class: verdict.BlackHoleUpstream,
		Fixes: verdict.Fixes(verdict.Path{Class: verdict.BlackHoleUpstream, UpstreamMTU: 1396, DownstreamMTU: 1500})}
	assert.Equal(t, want, got.Summary)
	assert.Contains(t, got.Headline, "over 1396 bytes from you")
	assert.Contains(t, got.Lines, "From you to the server: packets of at most 1396 bytes get through; larger ones are silently lost.")
	// The summary's JSON keys are verdict.Summary's.
	var keys map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(body), &keys))
	var sum map[string]any
	require.NoError(t, json.Unmarshal(keys["summary"], &sum))
	assert.ElementsMatch(t, []string{"healthy", "upstream_mtu", "downstream_mtu", "class", "fixes"}, mapKeys(sum))
}

func mapKeys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSummarize(t *testing.T) {
	whole := direction{maxPacket, howWhole}
	tests := []struct {
		name        string
		up, down    direction
		wantClass   string
		wantHealthy bool
		wantUp      int
		wantDown    int
	}{
		{"healthy", whole, whole, verdict.Healthy, true, 1500, 1500},
		{"both", direction{1399, howLost}, direction{1397, howLost}, verdict.BlackHole, false, 1399, 1397},
		{"up", direction{1280, howLost}, whole, verdict.BlackHoleUpstream, false, 1280, 1500},
		{"down", whole, direction{1397, howLost}, verdict.BlackHoleDownstream, false, 1500, 1397},
		{"pmtud", direction{1400, howSplit}, direction{1400, howSplit}, verdict.PMTUDWorks, true, 1400, 1400},
		{"pmtud one way", whole, direction{1492, howSplit}, verdict.PMTUDWorks, true, 1500, 1492},
		{"lost beats split", direction{1400, howSplit}, direction{1380, howLost}, verdict.BlackHoleDownstream, false, 1400, 1380},
		{"unmeasured", whole, direction{}, verdict.Unknown, false, 1500, 0},
		{"nonsense", direction{1500, howLost}, direction{9000, howWhole}, verdict.Unknown, false, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := summarize(tt.up, tt.down, false)
			assert.Equal(t, tt.wantClass, s.Class)
			assert.Equal(t, tt.wantHealthy, s.Healthy)
			assert.Equal(t, tt.wantUp, s.UpstreamMTU)
			assert.Equal(t, tt.wantDown, s.DownstreamMTU)
			assert.NotNil(t, s.Fixes, "fixes encode as [], never null")
			assert.Equal(t, tt.wantClass == verdict.Healthy || tt.wantClass == verdict.Unknown, len(s.Fixes) == 0)
			head, lines := explain(s, tt.up, tt.down, false, platform)
			assert.NotEmpty(t, head)
			assert.GreaterOrEqual(t, len(lines), 3)
		})
	}
}

func TestRefusals(t *testing.T) {
	h := &Handler{}
	for _, tc := range []struct {
		method, target string
		want           int
	}{
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
		{http.MethodHead, "/up", http.StatusMethodNotAllowed},
		{http.MethodHead, "/", http.StatusNotImplemented},  // allowed; the recorder cannot be hijacked
		{http.MethodGet, "/up", http.StatusNotImplemented}, // a recorder cannot be hijacked
		{http.MethodGet, "/down?s=1400", http.StatusNotImplemented},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(tc.method, tc.target, nil)
		h.ServeHTTP(w, r)
		assert.Equal(t, tc.want, w.Code, "%s %s", tc.method, tc.target)
	}
	// TLS: the probes refuse it.
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/up?p=")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotImplemented, resp.StatusCode)
}

// TestBudget checks the per-client byte budget through the handler: once
// a client is over MaxBytes it gets 429 until its minute is up.
func TestBudget(t *testing.T) {
	now := time.Unix(1000, 0)
	h := &Handler{MaxBytes: 2000, now: func() time.Time { return now }}
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, _ := splitResponse(t, rawGet(t, srv, getRequest(srv, "/"))) // the page: ~7.5 KB
	require.Equal(t, 200, resp.StatusCode)
	resp, _ = splitResponse(t, rawGet(t, srv, getRequest(srv, "/up?p=")))
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "60", resp.Header.Get("Retry-After"))
	now = now.Add(window)
	resp, _ = splitResponse(t, rawGet(t, srv, getRequest(srv, "/up?p=")))
	assert.Equal(t, 200, resp.StatusCode)
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &limiter{maxConns: 2, maxBytes: 100, maxClients: 2, now: func() time.Time { return now },
		clients: map[netip.Prefix]*client{}}
	a, b, c := clientKey("198.18.0.2:1"), clientKey("198.18.0.3:1"), clientKey("[fd00::1]:1")
	require.True(t, l.admit(a))
	require.True(t, l.admit(a))
	assert.False(t, l.admit(a), "a third connection")
	l.done(a)
	assert.True(t, l.admit(a), "a slot was freed")
	l.done(a)
	l.done(a)
	l.charge(a, 100)
	assert.False(t, l.admit(a), "over the byte budget")
	require.True(t, l.admit(b))
	l.done(b)
	assert.False(t, l.admit(c), "MaxClients reached, both within their minute")
	now = now.Add(window)
	assert.True(t, l.admit(c), "expired clients are swept for a new one")
	assert.True(t, l.admit(a), "a's new minute")
}

func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"198.18.0.2:5000", "198.18.0.2/32"},
		{"[::ffff:198.18.0.2]:5000", "198.18.0.2/32"},
		{"[fd00:198:18::2]:5000", "fd00:198:18::/64"},
		{"[fd00:198:18::ffff:1]:1", "fd00:198:18::/64"},
		{"[fe80::1%eth0]:1", "fe80::/64"},
	} {
		assert.Equal(t, tc.want, clientKey(tc.remote).String(), tc.remote)
	}
	assert.False(t, clientKey("garbage").IsValid())
}

// TestConcurrentClients runs several clients' probes at once under the
// race detector.
func TestConcurrentClients(t *testing.T) {
	srv := httptest.NewServer(&Handler{})
	defer srv.Close()
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			resp, err := http.Get(fmt.Sprintf("%s/down?s=%d", srv.URL, 600+i))
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	ok := 0
	for range 8 {
		if <-errs == nil {
			ok++
		}
	}
	assert.Equal(t, 8, ok)
}
