// Package awsfit wires fitshake into aws-sdk-go-v2: an HTTP client for
// config.WithHTTPClient whose transport is the SDK's own, dialing with a
// tlsdial.TCPDialer.
//
//	cfg, err := config.LoadDefaultConfig(ctx, config.WithHTTPClient(awsfit.HTTPClient(nil)))
//
// The SDK's transport keeps everything it sets (proxies from the
// environment, HTTP/2, TLS 1.2 at least, its timeouts and pool sizes);
// crypto/tls does the TLS, and the TCPDialer replays its ClientHello on a
// connection with a smaller MSS when the server stays silent. Requests
// through an HTTP proxy are not protected (their first flight is a
// CONNECT). Further transport options go through the returned client's
// WithTransportOptions; its WithDialerOptions would put a plain net.Dialer
// back: set the dialer's options in TCPDialer.NetDialer instead.
package awsfit

import (
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/fitshake/fitshake/tlsdial"
)

// HTTPClient returns the SDK's buildable HTTP client dialing with td. Nil
// td means the zero TCPDialer. td is not modified: if its NetDialer is nil,
// a copy of it dials with the SDK's own net.Dialer (30 s connect timeout,
// 30 s TCP keepalive).
func HTTPClient(td *tlsdial.TCPDialer) *awshttp.BuildableClient {
	b := awshttp.NewBuildableClient()
	d := tlsdial.TCPDialer{}
	if td != nil {
		d = *td
	}
	if d.NetDialer == nil {
		d.NetDialer = b.GetDialer()
	}
	return b.WithTransportOptions(func(tr *http.Transport) { tr.DialContext = d.DialContext })
}
