package steer_test

import (
	"context"
	"crypto/tls"
	"log"
	"net/http"
	"net/netip"

	"github.com/fitshake/fitshake/internal/steer"
	"github.com/fitshake/fitshake/pmtu"
)

// A server clamps new connections from a network known to black-hole
// packets over 1400 bytes; everyone else keeps full-size segments.
func ExampleListen() {
	g, err := steer.Listen(context.Background(), "tcp", ":8443", pmtu.MSSForMTU(1400, true))
	if err != nil {
		log.Fatal(err)
	}
	// Later, from evidence (and again whenever the set changes):
	if err := g.SetClamped([]netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}); err != nil {
		log.Print(err) // steer.ErrUnsupported outside Linux: serve unclamped
	}
	srv := &http.Server{TLSConfig: &tls.Config{}} // Certificates: as usual
	log.Fatal(srv.ServeTLS(g, "", ""))
}
