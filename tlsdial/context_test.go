package tlsdial_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingCtx is a long-lived context that counts the children registered
// on it: package context registers a child through the parent's AfterFunc
// when the parent has one (and is not a context of its own making: hence
// a Done channel of its own), and stops it when the child is cancelled.
type countingCtx struct {
	context.Context
	done chan struct{}
	live atomic.Int64
}

func newCountingCtx(parent context.Context) *countingCtx {
	c := &countingCtx{Context: parent, done: make(chan struct{})}
	context.AfterFunc(parent, func() { close(c.done) })
	return c
}

func (c *countingCtx) Done() <-chan struct{} { return c.done }

func (c *countingCtx) AfterFunc(f func()) func() bool {
	c.live.Add(1)
	var once sync.Once
	done := func() { once.Do(func() { c.live.Add(-1) }) }
	stop := context.AfterFunc(c.Context, func() { done(); f() })
	return func() bool {
		stopped := stop()
		if stopped {
			done()
		}
		return stopped
	}
}

// TestDialsLeaveNothingInTheContext: dials under one long-lived context,
// successful or not, leave no child registered in it once they return (the
// winner's attempt context included).
func TestDialsLeaveNothingInTheContext(t *testing.T) {
	leaktest.Check(t)
	srv := startServer(t, 0)
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx := newCountingCtx(parent)
	d := &tlsdial.Dialer{Config: srv.config(), Cache: &pmtu.Cache{}}
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	const n = 500
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var c net.Conn
			var err error
			if i%2 == 0 {
				c, err = d.DialContext(ctx, "tcp", srv.addr)
			} else {
				c, err = td.DialContext(ctx, "tcp", srv.addr)
			}
			if assert.NoError(t, err) {
				c.Close()
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, ctx.live.Load(), "children left registered in the caller's context after %d dials", n)
	// A failed dial leaves none either.
	_, err := d.DialContext(ctx, "tcp", "127.0.0.1:1")
	require.Error(t, err)
	assert.Zero(t, ctx.live.Load(), "after a refused connect")
}

// TestCancelWithCause: a context ended with a cause fails the dial with an
// error that is both ctx.Err() and the cause, for both dialers, during the
// connect and during a stall.
func TestCancelWithCause(t *testing.T) {
	leaktest.Check(t)
	srv := startServer(t, 0)
	stalled := blackHole(t, srv.addr, 1400, pmtutest.Both)
	errWhy := errors.New("the user pressed stop")
	for _, tc := range []struct {
		name    string
		timeout bool
	}{{"cancel-cause", false}, {"timeout-cause", true}} {
		t.Run(tc.name, func(t *testing.T) {
			mk := func() (context.Context, context.CancelFunc) {
				if tc.timeout {
					return context.WithTimeoutCause(context.Background(), 100*time.Millisecond, errWhy)
				}
				ctx, cancel := context.WithCancelCause(context.Background())
				time.AfterFunc(100*time.Millisecond, func() { cancel(errWhy) })
				return ctx, func() { cancel(nil) }
			}
			want := context.Canceled
			if tc.timeout {
				want = context.DeadlineExceeded
			}
			ctx, cancel := mk()
			defer cancel()
			d := &tlsdial.Dialer{Config: srv.config(), Cache: &pmtu.Cache{}, StallWindow: 10 * time.Second}
			_, err := d.DialContext(ctx, "tcp", stalled)
			require.Error(t, err)
			assert.ErrorIs(t, err, want, "Dialer: %v", err)
			assert.ErrorIs(t, err, errWhy, "Dialer keeps the cause: %v", err)

			// TCPDialer: the context bounds the connect only; a cause
			// given before the dial ends it there.
			ctx2, cancel2 := context.WithCancelCause(context.Background())
			cancel2(errWhy)
			_, err = (&tlsdial.TCPDialer{Cache: &pmtu.Cache{}}).DialContext(ctx2, "tcp", srv.addr)
			require.Error(t, err)
			assert.ErrorIs(t, err, context.Canceled, "TCPDialer: %v", err)
			assert.ErrorIs(t, err, errWhy, "TCPDialer keeps the cause: %v", err)
		})
	}
}

// TestCancelDuringStallIsPrompt: a Dialer's dial through a black hole ends
// soon after its context does, whether the context ends before the
// connect, while the hello is built, or just after it went out (before the
// dial's first TCP_INFO poll, when it has not enlisted yet) or later.
func TestCancelDuringStallIsPrompt(t *testing.T) {
	leaktest.Check(t)
	srv := startServer(t, 0)
	stalled := blackHole(t, srv.addr, 1400, pmtutest.Both)
	d := &tlsdial.Dialer{Config: srv.config(), Cache: &pmtu.Cache{}, StallWindow: 10 * time.Second}
	for _, after := range []time.Duration{0, 50 * time.Microsecond, 200 * time.Microsecond, 500 * time.Microsecond,
		900 * time.Microsecond, 2 * time.Millisecond, 20 * time.Millisecond} {
		for range 3 {
			ctx, cancel := context.WithCancel(context.Background())
			var at atomic.Int64
			time.AfterFunc(after, func() { at.Store(time.Now().UnixNano()); cancel() })
			_, err := d.DialContext(ctx, "tcp", stalled)
			end := time.Now()
			require.Error(t, err, "cancelled %v in", after)
			assert.ErrorIs(t, err, context.Canceled, "cancelled %v in: %v", after, err)
			if at.Load() != 0 {
				// A poll interval (1 ms) at most, plus a loaded machine's
				// scheduling: far below the 10 s stall window.
				assert.Less(t, end.Sub(time.Unix(0, at.Load())), 250*time.Millisecond, "cancelled %v in", after)
			}
			cancel()
		}
	}
}
