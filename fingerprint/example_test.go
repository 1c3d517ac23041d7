package fingerprint_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net"

	"github.com/fitshake/fitshake/fingerprint"
	utls "github.com/refraction-networking/utls"
)

// The ladder for a typical HTTPS client, with the exact record size of each
// rung's ClientHello.
func ExampleLadder() {
	cfg := &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	o := fingerprint.OptionsFrom(cfg, "example.com")
	for _, r := range fingerprint.Ladder(true) {
		n, err := r.RecordSize(o)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%-10s post-quantum=%-5t %4d bytes\n", r.Name, r.PostQuantum, n)
	}
	// Output:
	// pq         post-quantum=true  1479 bytes
	// pq-compact post-quantum=true  1418 bytes
	// classical  post-quantum=false  257 bytes
}

// Build measures a hello before any connection exists.
func ExampleBuild() {
	o := fingerprint.Options{ServerName: "example.com", NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS13}
	for _, r := range fingerprint.Ladder(true) {
		h, err := fingerprint.Build(r, &utls.Config{}, o) // a fresh Config per connection
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(h.Rung.Name, h.RecordSize, h.PostQuantum)
	}
	// Output:
	// pq 1444 true
	// pq-compact 1395 true
	// classical 222 false
}

// Connecting with one rung: build, dial, attach, handshake.
func ExampleBuild_dial() {
	ctx := context.Background()
	o := fingerprint.Options{ServerName: "example.com", NextProtos: []string{"h2", "http/1.1"}}
	h, err := fingerprint.Build(fingerprint.Ladder(false)[0], &utls.Config{}, o)
	if err != nil {
		log.Fatal(err)
	}
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", "example.com:443")
	if err != nil {
		log.Fatal(err)
	}
	h.Conn.SetUnderlyingConn(raw) // the first Write will be h.RecordSize bytes
	if err := h.Conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		log.Fatal(err)
	}
	defer h.Conn.Close()
	fmt.Println(h.Conn.ConnectionState().NegotiatedProtocol)
}

// crypto/tls can send the full post-quantum rung's hello itself: StdConfig
// holds the caller's Config to the ladder's rules, and StdHello shows the
// record crypto/tls writes with it, before any connection.
func ExampleRung_StdConfig() {
	user := &tls.Config{ServerName: "example.com", NextProtos: []string{"h2", "http/1.1"}}
	o := fingerprint.OptionsFrom(user, "")
	full := fingerprint.Ladder(false)[0]
	cfg, ok := full.StdConfig(user, o)
	if !ok {
		log.Fatal("crypto/tls cannot send this rung's hello")
	}
	hello, err := fingerprint.StdHello(cfg)
	if err != nil {
		log.Fatal(err)
	}
	spec, err := full.RecordSize(o)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("post-quantum share:", fingerprint.HasPostQuantumShare(hello))
	fmt.Println("minimum version TLS 1.2:", cfg.MinVersion == tls.VersionTLS12)
	fmt.Println("at least the spec's size:", len(hello) >= spec)
	// Output:
	// post-quantum share: true
	// minimum version TLS 1.2: true
	// at least the spec's size: true
}
