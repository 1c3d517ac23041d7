package fitshakeotel_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	fitshakeotel "github.com/fitshake/fitshake/otel"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

const exampleServer = "server.address=example.com,server.port=443"

// A box that refuses a hello split across segments: the Dialer's full
// hello is reset and its compact one completes; a TCPDialer, which cannot
// change crypto/tls's hello, fails. Reports as the dialers build them.
func TestClientTraceHelloRejected(t *testing.T) {
	trace, reader := newTrace(t)
	split := pmtu.Diagnosis{Class: pmtu.ClassSplitIntolerant}
	trace.Done(tlsdial.DoneInfo{Addr: "example.com:443", Report: tlsdial.Report{
		Attempts: []tlsdial.Attempt{
			{ID: 1, Rung: "pq", Outcome: tlsdial.OutcomeReset, Diagnosis: split},
			{ID: 2, Rung: "pq-compact", Outcome: tlsdial.OutcomeOK, Diagnosis: pmtu.Diagnosis{Class: pmtu.ClassReplied}},
		},
		Rung: "pq-compact", Diagnosis: split, Duration: 20 * time.Millisecond,
	}})
	intolerant := pmtu.Diagnosis{Class: pmtu.ClassContentIntolerant}
	herr := &tlsdial.HelloError{Addr: "example.com:443", ID: 1, Diagnosis: intolerant, Err: syscall.ECONNRESET}
	r := tlsdial.Report{
		Attempts:  []tlsdial.Attempt{{ID: 1, Outcome: tlsdial.OutcomeReset, Diagnosis: intolerant, Err: herr}},
		Diagnosis: intolerant, Duration: 2 * time.Millisecond,
	}
	trace.Done(tlsdial.DoneInfo{Addr: "example.com:443", Report: r, Err: &tlsdial.DialError{Addr: "example.com:443", Report: r, Err: herr}})

	c := collect(t, reader)
	assert.Equal(t, map[string]int64{
		exampleServer: 1,
		"error.type=hello_rejected," + exampleServer: 1,
	}, c.counts(t, "fitshake.client.dials"))
	assert.Equal(t, map[string]int64{
		"fitshake.path.class=split-intolerant middlebox,fitshake.rung=pq," + exampleServer: 1,
		"fitshake.path.class=hello-intolerant middlebox," + exampleServer:                  1,
	}, c.counts(t, "fitshake.client.hellos_rejected"))
	assert.Equal(t, map[string]int64{
		"fitshake.mss=0,fitshake.path.class=split-intolerant middlebox,fitshake.rung=pq-compact," + exampleServer: 1,
	}, c.counts(t, "fitshake.client.recovered_dials"))
	assert.Equal(t, map[string]int64{
		"fitshake.attempt.outcome=reset,fitshake.mss=0,fitshake.rung=pq," + exampleServer:      1,
		"fitshake.attempt.outcome=ok,fitshake.mss=0,fitshake.rung=pq-compact," + exampleServer: 1,
		"fitshake.attempt.outcome=reset,fitshake.mss=0," + exampleServer:                       1,
	}, c.counts(t, "fitshake.client.attempts"))
	assert.Nil(t, c.counts(t, "fitshake.client.stalls"), "resets are not stalls")
	rec := c.histograms(t, "fitshake.client.recovery.duration")
	assert.InDelta(t, 0.020, rec["fitshake.path.class=split-intolerant middlebox,"+exampleServer].Sum, 1e-9)
}

func TestClientTraceErrorType(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&tlsdial.DialError{Err: &tlsdial.HelloError{Err: &tlsdial.StallError{}}}, "hello_rejected"},
		{&tlsdial.DialError{Err: &tlsdial.StallError{}}, "stalled"},
		{&tlsdial.DialError{Err: context.Canceled}, "canceled"},
		{fmt.Errorf("read: %w", net.ErrClosed), "canceled"},
		{&tlsdial.DialError{Err: context.DeadlineExceeded}, "timeout"},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, "timeout"},
		{&net.DNSError{IsTimeout: true}, "timeout"},
		{&tlsdial.DialError{Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}, "certificate"},
		{fmt.Errorf("tls: %w", x509.HostnameError{Host: "x"}), "certificate"},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: handshake failure")}, "tls_alert"},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "connection_refused"},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "connection_reset"},
		{errors.New("something else"), "_OTHER"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			trace, reader := newTrace(t)
			trace.Done(tlsdial.DoneInfo{Addr: "example.com:443", Err: tc.err})
			assert.Equal(t, map[string]int64{"error.type=" + tc.want + "," + exampleServer: 1},
				collect(t, reader).counts(t, "fitshake.client.dials"), "%v", tc.err)
		})
	}
}

func TestClientTraceWithoutServerAddress(t *testing.T) {
	trace, reader := newTrace(t, fitshakeotel.WithoutServerAddress())
	trace.Done(tlsdial.DoneInfo{Addr: "[2001:db8::1]:8443", Report: tlsdial.Report{
		Attempts: []tlsdial.Attempt{{ID: 1, Outcome: tlsdial.OutcomeOK}},
	}})
	trace.Done(tlsdial.DoneInfo{Addr: "other.example:8443", Report: tlsdial.Report{
		Attempts: []tlsdial.Attempt{{ID: 1, Outcome: tlsdial.OutcomeOK}},
	}})
	c := collect(t, reader)
	assert.Equal(t, map[string]int64{"server.port=8443": 2}, c.counts(t, "fitshake.client.dials"))
	assert.Equal(t, map[string]int64{"fitshake.attempt.outcome=ok,fitshake.mss=0,server.port=8443": 2},
		c.counts(t, "fitshake.client.attempts"))
}

// NewClientTrace without WithMeterProvider takes the global provider; the
// Trace joins a user's own with MultiTrace.
func TestClientTraceGlobalProviderAndMultiTrace(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	otel.SetMeterProvider(mp) // for this test binary: no test reads the global one after it

	trace, err := fitshakeotel.NewClientTrace()
	require.NoError(t, err)
	assert.Nil(t, trace.AttemptStart, "only Done is set")

	mine := 0
	joined := tlsdial.MultiTrace(&tlsdial.Trace{Done: func(tlsdial.DoneInfo) { mine++ }}, trace)
	joined.Done(tlsdial.DoneInfo{Addr: "example.com:443"})
	assert.Equal(t, 1, mine)
	assert.Equal(t, map[string]int64{exampleServer: 1}, collect(t, reader).counts(t, "fitshake.client.dials"))
}

func TestClientTraceTLSVersion(t *testing.T) {
	trace, reader := newTrace(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13, tls.VersionTLS13} {
		trace.Done(tlsdial.DoneInfo{Addr: "example.com:443", ConnectionState: &tls.ConnectionState{Version: v},
			Report: tlsdial.Report{Attempts: []tlsdial.Attempt{{ID: 1, Outcome: tlsdial.OutcomeOK}}}})
	}
	assert.Equal(t, map[string]int64{
		exampleServer + ",tls.protocol.name=tls,tls.protocol.version=1.2": 1,
		exampleServer + ",tls.protocol.name=tls,tls.protocol.version=1.3": 2,
	}, collect(t, reader).counts(t, "fitshake.client.dials"))
}
