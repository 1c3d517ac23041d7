package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/fitshake/fitshake/internal/reset"
	"github.com/fitshake/fitshake/internal/verdict"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
)

// stockHandshake runs crypto/tls's own handshake, unclamped, which also
// measures the server's time to answer and its flight. It fails only when
// TCP cannot connect.
func (r *run) stockHandshake(ctx context.Context) error {
	c, err := r.dialPlain(ctx, "crypto/tls handshake (Go's ClientHello), no clamp")
	if err != nil {
		return err
	}
	defer reset.Close(c)
	base, _ := pmtu.ReadTCPInfo(c)
	hctx, cancel := context.WithTimeout(ctx, max(2*time.Second, 20*r.rtt))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tls.Client(c, r.cfg).HandshakeContext(hctx) }()
	err = r.await(hctx, c, base, done, cancel)
	r.res.Handshake = describe(err)
	r.noteCertificate(err)
	r.healthy = err == nil || isCertErr(err)
	if cur, e := pmtu.ReadTCPInfo(c); e == nil && r.healthy {
		r.res.Flight = int(cur.BytesReceived - base.BytesReceived)
	}
	return nil
}

// await waits for the handshake, reading TCP_INFO to end it early when
// its packets are seen to vanish (a SACKed tail, a reply with a hole) and
// to time the server's first byte.
func (r *run) await(ctx context.Context, c net.Conn, base pmtu.TCPInfo, done chan error, cancel func()) error {
	t0 := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var tail, hole since // as the judge's: a SACKed tail, a hole in the reply
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
		}
		cur, err := pmtu.ReadTCPInfo(c)
		if err != nil || !measures {
			continue
		}
		elapsed := time.Since(t0)
		// The evidence as the judge reads it; not the class, which needs
		// the size of crypto/tls's hello, unknown here.
		ev := pmtu.Classify(0, base, cur, elapsed).Evidence
		got := ev.Received > 0
		if got && r.ttfb == 0 {
			r.ttfb = elapsed
		}
		// After ICMP lowered the path MTU, the kernel is resending the
		// head in smaller segments: a SACKed tail is no loss then.
		tailLost := tail.held(ev.SACKed > 0 && !got && !ev.PathMTUShrank, elapsed, confirmTail(cur.RTT))
		holeLost := hole.held(ev.OutOfOrder > 0 && !got, elapsed, confirm(cur.RTT))
		if tailLost || holeLost {
			cancel()
			<-done
			return errStalled
		}
	}
}

var errStalled = errors.New("stalled: its packets vanish on the path")

// fitshakeHandshake dials with fitshake's Dialer, which recovers by
// itself, and says how.
func (r *run) fitshakeHandshake(ctx context.Context) {
	if err := r.dialing(ctx, "fitshake handshake (tlsdial.Dialer)"); err != nil {
		r.res.Fitshake = "not tried: " + err.Error()
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d := &tlsdial.Dialer{Config: r.cfg, NetDialer: r.nd, Cache: &pmtu.Cache{}}
	c, err := d.DialContext(dctx, r.network, r.addr)
	var rep tlsdial.Report
	var de *tlsdial.DialError
	switch {
	case err == nil:
		rep = c.(*tlsdial.Conn).Report()
		reset.Close(c.(*tlsdial.Conn).NetConn())
	case errors.As(err, &de):
		rep = de.Report
	}
	r.res.Conns += max(0, len(rep.Attempts)-1)
	r.res.Fitshake = describeFitshake(err, rep)
	r.noteCertificate(err)
}

func describeFitshake(err error, rep tlsdial.Report) string {
	s := describe(err)
	switch {
	case err == nil:
		// The hello that completed, when it took more than a plain dial.
		if len(rep.Attempts) > 1 || rep.MSS > 0 {
			s += ", recovered " + how(len(rep.Attempts), rep.MSS, rep.Rung, rep.HelloSize, rep.SecurityReduced)
		}
	case isCertErr(err):
		// A certificate error ends the dial before a hello completed: the
		// Report names no winner (HelloSize 0); the attempt that got the
		// server's certificate says how far the path carried it.
		if a, ok := certAttempt(rep); ok && (len(rep.Attempts) > 1 || a.MSS > 0) {
			s += ", reached " + how(len(rep.Attempts), a.MSS, a.Rung, a.HelloSize, false)
		}
	}
	return s
}

// how says which attempt got through: "after 3 attempts: MSS 1300,
// compact hello of 900 bytes".
func how(attempts, mss int, rung string, helloSize int, reduced bool) string {
	clamp := "no clamp"
	if mss > 0 {
		clamp = "MSS " + itoa(mss)
	}
	plural := "s"
	if attempts == 1 {
		plural = ""
	}
	s := fmt.Sprintf("after %d attempt%s: %s, %s hello of %d bytes", attempts, plural, clamp, rung, helloSize)
	if reduced {
		s += " (no post-quantum key share)"
	}
	return s
}

// certAttempt returns the attempt that failed on the certificate.
func certAttempt(rep tlsdial.Report) (tlsdial.Attempt, bool) {
	for _, a := range rep.Attempts {
		if a.HelloSize > 0 && isCertErr(a.Err) {
			return a, true
		}
	}
	return tlsdial.Attempt{}, false
}

func describe(err error) string {
	switch {
	case err == nil:
		return "ok"
	case isCertErr(err):
		return "ok up to the certificate, which is not trusted here (" + certReason(err) + ")"
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time"
	}
	return "failed: " + err.Error()
}

// noteCertificate records the first certificate verification failure of
// a handshake: the Result's Certificate and its fix.
func (r *run) noteCertificate(err error) {
	if r.certErr == nil && isCertErr(err) {
		r.certErr = err
		r.res.Certificate = certReason(err)
	}
}

// x509Error returns the verification failure err carries, x509's own
// error without what wraps it ("tlsdial: dial …: tls: failed to verify
// certificate: "), or nil when it carries none.
func x509Error(err error) error {
	var (
		ve *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		hn x509.HostnameError
		ci x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &ve) && ve.Err != nil:
		return ve.Err
	case errors.As(err, &ua):
		return ua
	case errors.As(err, &hn):
		return hn
	case errors.As(err, &ci):
		return ci
	}
	return nil
}

// certReason is a certificate verification failure in x509's own
// sentence.
func certReason(err error) string {
	if x := x509Error(err); x != nil {
		return x.Error()
	}
	return err.Error()
}

// certFix is the change that makes the server's certificate verify, for
// whom: the client's roots, the name it verifies, or the certificate.
func certFix(err error) string {
	var (
		ua x509.UnknownAuthorityError
		hn x509.HostnameError
		ci x509.CertificateInvalidError
	)
	x := x509Error(err)
	switch {
	case errors.As(x, &ua):
		return "app: trust the authority that issued the server's certificate (a private CA?): its PEM in tls.Config.RootCAs; diagnose -cafile FILE"
	case errors.As(x, &hn):
		return "app: verify the name the server's certificate was issued for (" + hn.Error() + "): tls.Config.ServerName; diagnose -servername NAME"
	case errors.As(x, &ci):
		return "server: replace its certificate (" + ci.Error() + ")"
	}
	return "app: make the server's certificate verify (" + certReason(err) + "): tls.Config.RootCAs and ServerName; diagnose -cafile FILE -servername NAME"
}

// isCertErr reports whether err is a certificate verification failure:
// the server's whole flight arrived.
func isCertErr(err error) bool {
	var ve *tls.CertificateVerificationError
	return x509Error(err) != nil || errors.As(err, &ve)
}

// helloClass tells a box that refuses the ClientHello itself from a black
// hole: when crypto/tls's handshake failed though packets get through (or
// every clamp was reset), it asks whether the server answers fitshake's
// full, compact and classical hellos, unclamped.
func (r *run) helloClass(ctx context.Context, up, down limit) (string, error) {
	if r.healthy || !measures || down.broken || (up.broken && !(up.reset && up.mtu == 0)) {
		return "", nil
	}
	full, err := r.answered(ctx, "full hello answered? no clamp", r.hellos.full)
	if err != nil || full.outcome == passed {
		return "", err
	}
	compact, err := r.answered(ctx, "compact hello answered? no clamp", r.hellos.compact)
	switch {
	case err != nil:
		return "", err
	case compact.outcome == passed && full.segments > 1:
		return verdict.SplitIntolerant, nil
	case compact.outcome == passed:
		return verdict.HelloIntolerant, nil
	}
	small, err := r.answered(ctx, "classical hello answered? no clamp", r.hellos.small)
	if err != nil || small.outcome != passed {
		return "", err
	}
	return verdict.HelloIntolerant, nil
}

func (r *run) answered(ctx context.Context, what string, hello []byte) (obs, error) {
	return r.probe(ctx, what, spec{dir: down, hello: hello, wait: r.waitDown()})
}
