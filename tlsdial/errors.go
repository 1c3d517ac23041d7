package tlsdial

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// ErrStalled is matched (with errors.Is) by every error that ends a dial
// because the handshake stalled on every size tried.
var ErrStalled = errors.New("tlsdial: handshake stalled")

// StallError reports an attempt that stalled: TCP connected and the
// ClientHello went out, but the reply never came — TCP_INFO showed a black
// hole, or the server stayed silent while a parallel attempt got its reply,
// or past every window (see Attempt.Outcome).
type StallError struct {
	Addr      string
	ID        int           // the attempt's Attempt.ID
	MSS       int           // clamp in force; 0 = none
	HelloSize int           // ClientHello record bytes; 0 if unknown
	Elapsed   time.Duration // since the first flight was written
	Window    time.Duration
	// Diagnosis is what was seen: TCP_INFO's class and evidence, and
	// Evidence.OvertakenBy when a parallel attempt got the reply;
	// ClassUnknown without TCP_INFO.
	Diagnosis pmtu.Diagnosis
}

func (e *StallError) Error() string {
	mss := "no MSS clamp"
	if e.MSS > 0 {
		mss = fmt.Sprintf("MSS %d", e.MSS)
	}
	hello := ""
	if e.HelloSize > 0 {
		hello = fmt.Sprintf(" after a %d-byte ClientHello", e.HelloSize)
	}
	if e.Diagnosis.Class != pmtu.ClassUnknown || e.Diagnosis.Evidence.OvertakenBy > 0 {
		return fmt.Sprintf("handshake stalled (%s, %s): %s", mss, e.Diagnosis.Class, e.Diagnosis)
	}
	return fmt.Sprintf("handshake stalled%s (%s, server silent for %s)",
		hello, mss, e.Elapsed.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrStalled) true.
func (e *StallError) Is(target error) bool { return target == ErrStalled }

// Timeout reports true: a stall is a timeout of the server's reply.
func (e *StallError) Timeout() bool { return true }

// Temporary reports true: another path or size may work.
func (e *StallError) Temporary() bool { return true }

// ErrHelloRejected is matched (with errors.Is) by every error that ends a
// dial because a box on the path refuses the ClientHello itself — split
// across segments, or its size or content — and no hello the dialer may
// send got through.
var ErrHelloRejected = errors.New("tlsdial: ClientHello rejected on the path")

// HelloError reports an attempt whose ClientHello a box on the path
// refused: a split-intolerant or content-intolerant middlebox
// (pmtu.Class.HelloRejected). No MSS clamp gets past it; another hello
// does.
type HelloError struct {
	Addr      string
	ID        int // the attempt's Attempt.ID
	HelloSize int // ClientHello record bytes; 0 if unknown
	// Diagnosis is what was seen: the class and its evidence;
	// Diagnosis.Fix() is the change to ask of the network.
	Diagnosis pmtu.Diagnosis
	// Fix is the change on the client's side that gets through: a
	// setting of this package, of crypto/tls, or Dialer instead of
	// TCPDialer. Empty when the dialer tried every hello it may.
	Fix string
	// Err is how the attempt ended: a reset, an end of stream, or a
	// *StallError.
	Err error
}

func (e *HelloError) Error() string {
	msg := fmt.Sprintf("ClientHello rejected on the path (%s): %s", e.Diagnosis.Class, e.Diagnosis)
	if e.Fix != "" {
		return msg + "; fix: " + e.Fix
	}
	return msg + "; fix: " + e.Diagnosis.Fix()
}

// Is makes errors.Is(err, ErrHelloRejected) true.
func (e *HelloError) Is(target error) bool { return target == ErrHelloRejected }

func (e *HelloError) Unwrap() error { return e.Err }

// DialError is returned by the dialers when a dial fails. It carries the
// Report of every attempt made and wraps the error that ended the dial, so
// errors.Is(err, context.Canceled), errors.Is(err, ErrStalled) and
// errors.As(err, &x509.UnknownAuthorityError{}) see through it.
type DialError struct {
	Addr   string
	Report Report
	Err    error
}

func (e *DialError) Error() string {
	msg := fmt.Sprintf("tlsdial: dial %s: %v", e.Addr, e.Err)
	if n := len(e.Report.Attempts); n > 1 {
		msg += fmt.Sprintf(" (after %d attempts)", n)
	}
	return msg
}

func (e *DialError) Unwrap() error { return e.Err }

// Timeout reports whether the dial failed by timing out (a stall, or a
// deadline).
func (e *DialError) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.Err, &t) && t.Timeout()
}

// Temporary is deprecated in net.Error; it reports Timeout.
func (e *DialError) Temporary() bool { return e.Timeout() }

var (
	_ net.Error = (*DialError)(nil)
	_ net.Error = (*StallError)(nil)
)
