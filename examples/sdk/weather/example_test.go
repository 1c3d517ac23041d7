package weather_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/fitshake/fitshake/examples/sdk/weather"
	"github.com/fitshake/fitshake/tlsdial"
)

func ExampleNew() {
	// A local server stands in for the API.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"city":%q,"temp_c":12.5,"summary":"drizzle"}`, r.URL.Query().Get("city"))
	}))
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())

	// fitshake is on by default; WithFitshake passes a dialer of one's
	// own, here one that logs its stalls and recoveries.
	td := &tlsdial.TCPDialer{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	c, err := weather.New(srv.URL, weather.WithFitshake(td), weather.WithRootCAs(roots))
	if err != nil {
		log.Fatal(err)
	}
	defer c.CloseIdleConnections()
	cond, err := c.Current(context.Background(), "Bergen")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %.1f °C, %s\n", cond.City, cond.TempC, cond.Summary)
	// Output:
	// Bergen: 12.5 °C, drizzle
}
