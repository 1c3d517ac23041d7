package tlswatch

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// conn is an accepted connection under watch. Until its verdict it follows
// the record headers both ways; from then on it passes I/O through with
// one atomic load.
type conn struct {
	net.Conn
	w        *Watcher
	accepted time.Time
	passing  atomic.Bool // the verdict is in: pure pass-through

	mu       sync.Mutex
	judged   bool
	stage    Stage
	in, out  records
	read     int
	helloLen int
	wrote    int
	alert    string

	// The poller's (tcppoll.Target), guarded by its lock.
	pollAt  time.Time
	pollIdx int
}

// NetConn returns the connection underneath, for code that reads its
// socket (pmtu.ReadTCPInfo unwraps through it).
func (c *conn) NetConn() net.Conn { return c.Conn }

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.passing.Load() {
		return n, err
	}
	c.mu.Lock()
	if c.judged {
		c.mu.Unlock()
		return n, err
	}
	c.read += n
	c.in.feed(b[:n], c.clientRecord)
	if c.stage == StageHelloPartial && c.read >= c.helloLen {
		c.stage = StageHello // the hello's tail, with no header of its own
	}
	end := EndNone
	if err != nil {
		end = endOf(err)
	}
	over := c.stage == StageDone || c.alert != "" || end != EndNone
	c.mu.Unlock()
	if over {
		c.judge(end)
	}
	return n, err
}

// clientRecord sees the header of one of the client's records. Under c.mu.
func (c *conn) clientRecord(typ byte, length int) bool {
	switch c.stage {
	case StageNothing:
		if typ != recHandshake {
			c.alert = "not TLS: the first record is not a handshake"
			return false
		}
		c.helloLen = 5 + length
		c.stage = StageHelloPartial
	case StageHelloPartial:
		c.stage = StageHello // a second record: the hello's record passed
	case StageFlight:
		switch {
		case typ == recChangeCipherSpec:
		case typ == recAlert || (typ == recApplicationData && length == encryptedAlertLen):
			c.alert = "client alert"
			return false
		case typ == recHandshake && c.out.helloRetry():
			// A second hello, after our HelloRetryRequest.
			c.out.restart()
			c.stage = StageHelloPartial
			c.helloLen = 5 + length
		default:
			c.stage = StageDone
			return false
		}
	}
	return true
}

func (c *conn) Write(b []byte) (int, error) {
	if c.passing.Load() {
		return c.Conn.Write(b)
	}
	c.mu.Lock()
	if !c.judged {
		c.wrote += len(b)
		c.out.feed(b, c.serverRecord)
		if c.stage == StageHello || c.stage == StageHelloPartial {
			c.stage = StageFlight
		}
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// serverRecord sees the header of one of our records. Under c.mu.
func (c *conn) serverRecord(typ byte, _ int) bool {
	if typ == recAlert && c.alert == "" {
		c.alert = "server alert"
	}
	return true
}

func (c *conn) Close() error {
	if !c.passing.Load() {
		c.judge(EndClosed)
	}
	return c.Conn.Close()
}

// Poll is the stall check (tcppoll.Target): a handshake still open after
// StallAfter is judged on what the kernel shows now.
func (c *conn) Poll() { c.judge(EndNone) }

// PollState is the poller's bookkeeping in c (tcppoll.Target).
func (c *conn) PollState() (*time.Time, *int) { return &c.pollAt, &c.pollIdx }

// judge gives c its verdict once, then lets it pass I/O through.
func (c *conn) judge(end End) {
	c.mu.Lock()
	if c.judged {
		c.mu.Unlock()
		return
	}
	c.judged = true
	o := observation{
		stage: c.stage, end: end, read: c.read, helloLen: c.helloLen,
		wrote: c.wrote, alert: c.alert, elapsed: time.Since(c.accepted),
	}
	c.mu.Unlock()
	c.passing.Store(true)
	c.w.polls.Set(c, time.Time{})
	ti, err := pmtu.ReadTCPInfo(c.Conn)
	o.info, o.infoOK = ti, err == nil
	c.w.record(c.RemoteAddr(), o)
}

// endOf tells how a read error ended the client's stream.
func endOf(err error) End {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		return EndEOF
	case errors.Is(err, syscall.ECONNRESET):
		return EndReset
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return EndTimeout
	}
	return EndClosed
}
