package tlsdial_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/fitshake/fitshake/tlsdial"
)

func ExampleTransport() {
	// A local HTTP/2 server stands in for a real one. For a public server,
	// leave Config nil: the system roots apply.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello over %s", r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())

	// HTTP/2 or HTTP/1.1, whichever the server negotiates, on connections
	// that survive path-MTU black holes. Set Dialer.Trace to see each
	// dial's Report.
	client := &http.Client{Transport: &tlsdial.Transport{
		Dialer: &tlsdial.Dialer{Config: &tls.Config{RootCAs: roots}},
	}}
	defer client.CloseIdleConnections()

	resp, err := client.Get(srv.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Proto, resp.TLS.NegotiatedProtocol)
	fmt.Println(string(body))
	// Output:
	// HTTP/2.0 h2
	// hello over HTTP/2.0
}
