package tlsdialtest_test

import (
	"errors"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial/tlsdialtest"
)

// Through the kernel's black hole, fitshake reads the loss from TCP_INFO
// and recovers well within its 250 ms stall window; crypto/tls hangs.
func TestKernelPath(t *testing.T) {
	lab.Require(t) // with CI=true, fail rather than skip
	p := tlsdialtest.NewKernelPath(t, 1400)
	if p == nil {
		return // ran in the client namespace
	}
	// The first socket starts the runtime's poller (2 fds that stay): start
	// it before counting.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln.Close()
	leaktest.Check(t)
	assert.Equal(t, 1400, p.MTU)
	srv := p.NewServer(t, http.HandlerFunc(hello))
	url := "https://" + srv.Listener.Addr().String() + "/"

	stock := srv.Client()
	stock.Timeout = time.Second
	_, err = stock.Get(url)
	var te interface{ Timeout() bool }
	if assert.Error(t, err, "crypto/tls got through the black hole") {
		assert.True(t, errors.As(err, &te) && te.Timeout(), "%v", err)
	}
	stock.CloseIdleConnections()

	c := tlsdialtest.NewClient(t, srv)
	resp, body := get(t, c.Client, url)
	assert.Equal(t, "hello over HTTP/2.0", body)
	r := c.Report(resp)
	t.Logf("%v", r)
	require.NotEmpty(t, r.Attempts)
	first := r.Attempts[0]
	assert.Contains(t, []pmtu.Class{pmtu.ClassUpstream, pmtu.ClassDownstream}, first.Diagnosis.Class,
		"TCP_INFO shows the black hole: %v", r)
	assert.Less(t, first.Duration, 250*time.Millisecond, "recovered before the stall window: %v", r)
	assert.Equal(t, 1360, r.MSS)
}

// Without what a kernel path needs, NewKernelPath skips and says why.
func TestKernelPathSkips(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("as root, TestKernelPath covers the kernel path")
	}
	var skipped bool
	t.Run("inner", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		tlsdialtest.NewKernelPath(t, 1400)
		t.Error("NewKernelPath returned without root")
	})
	assert.True(t, skipped)
}
