package tlsdial

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// A prelude is a plaintext exchange a client opens its connection with,
// before its TLS: it writes a fixed request, the server answers with a few
// bytes saying whether TLS follows. A TCPConn passes attempt 1's
// exchanges through and records them; each raced attempt replays them in
// order, checks that every answer is the one attempt 1 got, and only then
// replays the ClientHello. A client-first protocol joins by adding an
// entry to preludes. (A server-first one, MySQL or SMTP, cannot: its
// greeting is not a request fitshake could recognise and replay.)
type prelude struct {
	name    string
	request []byte // exactly what the client writes, in one Write
	// answer is the length of the server's answer; answers says what each
	// answer of that length means. Any other answer is read as nextPlain.
	answer  int
	answers map[string]preludeNext
}

// preludeNext is what an answer lets follow.
type preludeNext uint8

const (
	nextAny     preludeNext = iota // refused: another prelude, a ClientHello or plain bytes
	nextTLS                        // TLS follows: the next write is the ClientHello
	nextPlain                      // no TLS: plain bytes follow, nothing to watch
	nextRetried                    // a HelloRetryRequest: a change_cipher_spec, then the second ClientHello
)

// maxPreludes bounds the exchanges before a ClientHello: a client going
// round in refused requests is passed through.
const maxPreludes = 4

// preludes are the known client-first preludes.
var preludes = []*prelude{
	{
		// A PostgreSQL client asks for TLS with an SSLRequest (int32
		// length 8, int32 code 80877103); 'S': TLS follows, 'N': not.
		name:    "PostgreSQL SSLRequest",
		request: []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f},
		answer:  1,
		answers: map[string]preludeNext{"S": nextTLS, "N": nextPlain},
	},
	{
		// GSSENCRequest (code 80877104): 'G' means GSSAPI encryption,
		// not TLS; 'N' lets the client send an SSLRequest next on the
		// same connection (libpq's gssencmode=prefer).
		name:    "PostgreSQL GSSENCRequest",
		request: []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30},
		answer:  1,
		answers: map[string]preludeNext{"N": nextAny},
	},
}

// preludeOf returns the prelude whose request b is, or nil.
func preludeOf(b []byte) *prelude {
	for _, p := range preludes {
		if bytes.Equal(b, p.request) {
			return p
		}
	}
	return nil
}

// next says what the complete answer a lets follow.
func (p *prelude) next(a []byte) preludeNext {
	if n, ok := p.answers[string(a)]; ok {
		return n
	}
	return nextPlain
}

// exchange is one request attempt 1 sent before the watched ClientHello,
// and the answer it got: a prelude's, or a first ClientHello answered by a
// HelloRetryRequest (and the change_cipher_spec the client may send after
// it, with no answer).
type exchange struct {
	name    string // for Report.Prelude; "" for a change_cipher_spec
	request []byte
	answer  []byte
	p       *prelude // nil but for a prelude
}

// preludeNames names the exchanges, for Report.Prelude.
func preludeNames(xs []exchange) string {
	var names []string
	for _, x := range xs {
		if x.name != "" {
			names = append(names, x.name)
		}
	}
	return strings.Join(names, ", ")
}

// PreludeError reports that a raced attempt's server answered a replayed
// prelude (PostgreSQL's SSLRequest, say) differently from attempt 1's
// server: that attempt ends with it (OutcomeError) rather than replay a
// ClientHello into a conversation the TLS stack did not have.
type PreludeError struct {
	Prelude string // the prelude's name, such as "PostgreSQL SSLRequest"
	ID      int    // the attempt's Attempt.ID
	Want    []byte // what attempt 1 was answered
	Got     []byte // what attempt ID was answered
}

func (e *PreludeError) Error() string {
	return fmt.Sprintf("tlsdial: attempt %d: %s answered %q on replay, %q on attempt 1", e.ID, e.Prelude, e.Got, e.Want)
}

// replayPreludes replays xs, attempt 1's exchanges, on conn, an attempt's
// fresh connection, and checks each answer. The writes are bounded by wdl,
// the reads by ctx (the stack's read deadline, the attempt's end), which
// closes conn's deadlines when it ends.
func (c *TCPConn) replayPreludes(ctx context.Context, id int, conn net.Conn, xs []exchange, wdl time.Time) error {
	if len(xs) == 0 {
		return nil
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	conn.SetWriteDeadline(wdl)
	err := replay(id, conn, xs)
	if !stop() {
		// ctx ended: its deadline is the error, even if the exchanges
		// completed as it did.
		return fmt.Errorf("tlsdial: replaying %s: %w", preludeNames(xs), ctxErr(ctx))
	}
	return err
}

// aLongTimeAgo is a deadline that has passed: it wakes a blocked Read.
var aLongTimeAgo = time.Unix(1, 0)

func replay(id int, conn net.Conn, xs []exchange) error {
	for _, x := range xs {
		if _, err := conn.Write(x.request); err != nil {
			return err
		}
		if len(x.answer) == 0 {
			continue
		}
		got := make([]byte, len(x.answer))
		if _, err := io.ReadFull(conn, got); err != nil {
			return err
		}
		if !bytes.Equal(got, x.answer) {
			return &PreludeError{Prelude: x.name, ID: id, Want: x.answer, Got: got}
		}
	}
	return nil
}

// helloRetryRandom is the Random of a ServerHello that is a TLS 1.3
// HelloRetryRequest (RFC 8446, section 4.1.3).
var helloRetryRandom = []byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// isHelloRetry reports whether b, a server's first bytes, starts with a
// HelloRetryRequest: a handshake record holding a ServerHello whose
// Random is helloRetryRandom.
func isHelloRetry(b []byte) bool {
	const random = 5 + 4 + 2 // record header, handshake header, legacy_version
	return len(b) >= random+32 && b[0] == 22 && b[1] == 3 && b[5] == 2 &&
		bytes.Equal(b[random:random+32], helloRetryRandom)
}

// helloRetryName names a first ClientHello answered by a HelloRetryRequest
// in Report.Prelude.
const helloRetryName = "HelloRetryRequest"

// ccsRecord is TLS 1.3's compatibility change_cipher_spec record, which a
// client may send before its second ClientHello.
var ccsRecord = []byte{20, 3, 3, 0, 1, 1}

// wholeRecords reports whether b is a sequence of complete TLS records.
func wholeRecords(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 5 {
			return false
		}
		n := 5 + (int(b[3])<<8 | int(b[4]))
		if len(b) < n {
			return false
		}
		b = b[n:]
	}
	return true
}

// retried handles attempt 1's first reply got when it is a
// HelloRetryRequest, in whole records: the first hello and got become an
// exchange each raced attempt replays and checks, and the second hello is
// watched as the first was. It returns false, having only marked the
// report, when the retry cannot be replayed (split records, or the dial is
// settling meanwhile).
func (c *TCPConn) retried(got []byte) bool {
	if !isHelloRetry(got) {
		return false
	}
	ok := false
	c.e.do(func(now time.Time) {
		if wholeRecords(got) {
			ok = c.e.m.retried(now, c.first.id)
		}
		if !ok {
			c.e.m.report.Protection = UnprotectedHelloRetry
		}
	})
	if !ok {
		return false
	}
	c.mu.Lock()
	if c.state != stateWatching {
		// Settled or closed meanwhile: got is the stack's all the same,
		// and what follows is not watched.
		c.mu.Unlock()
		c.noteRetry(got)
		return true
	}
	c.exch = append(c.exch, exchange{name: helloRetryName, request: c.hello, answer: bytes.Clone(got)})
	c.hello, c.state, c.next = nil, stateFresh, nextRetried
	c.mu.Unlock()
	return true
}

// noteRetry marks the report when a raced attempt's first bytes b are a
// HelloRetryRequest, before the attempt reports them: what follows the
// second hello is not watched.
func (c *TCPConn) noteRetry(b []byte) {
	if isHelloRetry(b) {
		c.e.do(func(time.Time) { c.e.m.report.Protection = UnprotectedHelloRetry })
	}
}
