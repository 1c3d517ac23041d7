// Command diagpage serves fitshake's diagnostic page at / on a plain-HTTP
// address. Someone on a network where TLS handshakes hang opens it in a
// browser; the page measures the largest packet that gets through each way
// and shows the fix for their network team.
//
//	go run ./examples/diagpage -addr :8080
//
// Serve it directly (no reverse proxy or CDN in front: the page measures
// the browser's own TCP connection) from a Linux host for exact sizes.
package main

import (
	"flag"
	"log"
	"net/http"
	"time"

	"github.com/fitshake/fitshake/diagpage"
)

func main() {
	addr := flag.String("addr", ":8080", "plain-HTTP address to serve the page on")
	flag.Parse()
	srv := &http.Server{
		Addr:    *addr,
		Handler: &diagpage.Handler{},
		// An upstream probe that the path loses never reaches the
		// handler: these bound the connections it leaves behind.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
	}
	log.Printf("diagpage: serving on http://%s/", *addr)
	log.Fatal(srv.ListenAndServe())
}
