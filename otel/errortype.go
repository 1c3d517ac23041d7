package fitshakeotel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"syscall"

	"github.com/fitshake/fitshake/tlsdial"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// errorType is the error.type of a failed dial: a short, fixed word (see
// the package documentation), so that its series stay few.
func errorType(err error) string {
	var (
		ne net.Error
		oe *net.OpError
	)
	switch {
	case errors.Is(err, tlsdial.ErrHelloRejected): // before stalled: it may wrap a stall
		return "hello_rejected"
	case errors.Is(err, tlsdial.ErrStalled):
		return "stalled"
	case errors.Is(err, context.Canceled), errors.Is(err, net.ErrClosed):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case certificateError(err):
		return "certificate"
	case errors.As(err, &oe) && oe.Op == "remote error": // crypto/tls's and utls's received alert
		return "tls_alert"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection_reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return semconv.ErrorTypeOther.Value.AsString()
}

// certificateError reports whether err is a failed verification of the
// server's certificate, by crypto/tls or by utls (whose errors wrap
// x509's).
func certificateError(err error) bool {
	var (
		ve *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		hn x509.HostnameError
		ci x509.CertificateInvalidError
	)
	return errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci)
}
