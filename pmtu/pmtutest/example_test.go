//go:build linux

package pmtutest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
)

// An HTTPS server behind a 1400-byte black hole: a stock client times out,
// a client whose dialer clamps the MSS gets its answer.
func Example() {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the stalled handshake's error
	srv.StartTLS()
	defer srv.Close()

	p, err := pmtutest.Start(pmtutest.Config{Target: srv.Listener.Addr().String(), MTU: 1400})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	get := func(d *net.Dialer) string {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, p.Addr()) // through the hole
		}
		client := &http.Client{Transport: tr, Timeout: time.Second}
		defer client.CloseIdleConnections()
		resp, err := client.Get(srv.URL)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "timeout"
		}
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}

	fmt.Println("stock:", get(new(net.Dialer)))
	fmt.Println("dropped upstream:", p.Stats().UpDropped > 0)

	clamped, err := pmtu.DialerWithMTU(nil, 1400)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("clamped:", get(clamped))
	fmt.Println("clamped MSS seen by the proxy:", p.Stats().MSS[1])
	// Output:
	// stock: timeout
	// dropped upstream: true
	// clamped: hello
	// clamped MSS seen by the proxy: 1348
}
