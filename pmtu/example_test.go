package pmtu_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

func ExampleMSSForMTU() {
	// The TCP_MAXSEG values that keep a connection within a 1400-byte path.
	fmt.Println(pmtu.MSSForMTU(1400, false), pmtu.MSSForMTU(1400, true))
	// Output: 1360 1340
}

func ExampleValidateMSS() {
	fmt.Println(pmtu.ValidateMSS(1360))
	fmt.Println(pmtu.ValidateMSS(42))
	// Output:
	// <nil>
	// pmtu: invalid MSS 42: want 0 (no clamp) or 88..32767
}

// A TLS dialer whose connections fit a 1400-byte path in both directions.
func ExampleDialerWithMTU() {
	d, err := pmtu.DialerWithMTU(&net.Dialer{Timeout: 10 * time.Second}, 1400)
	if err != nil {
		log.Fatal(err) // an invalid MTU, or no clamp on this platform
	}
	td := &tls.Dialer{NetDialer: d}
	conn, err := td.DialContext(context.Background(), "tcp", "example.com:443")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	mss, err := pmtu.EffectiveMSS(conn) // unwraps the *tls.Conn
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("segments of", mss, "bytes") // 1348 over IPv4 on Linux
}

// ClampMSS plugs into net.Dialer.Control, after which it calls the
// function it was given.
func ExampleClampMSS() {
	d := &net.Dialer{
		Control: pmtu.ClampMSS(1360, func(network, address string, _ syscall.RawConn) error {
			log.Printf("dialing %s %s with TCP_MAXSEG 1360", network, address)
			return nil
		}),
	}
	conn, err := d.Dial("tcp", "example.com:443")
	if err != nil {
		log.Fatal(err)
	}
	conn.Close()
}

// ReadTCPInfo tells a silent server from a black hole: after the
// ClientHello is written, a healthy path acknowledges it within a round
// trip even if the server is slow to answer.
func ExampleReadTCPInfo() {
	conn, err := net.Dial("tcp", "example.com:443")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	// ... write a ClientHello, wait a few round trips ...
	ti, err := pmtu.ReadTCPInfo(conn)
	if err != nil {
		log.Fatal(err) // pmtu.ErrUnsupported outside Linux
	}
	switch {
	case ti.Unacked == 0:
		fmt.Println("delivered; the server is just slow")
	case ti.Sacked > 0 && ti.BytesAcked <= 1:
		fmt.Println("head segment lost, tail SACKed: a black hole")
	}
}

// What to ask for, and of whom: Fix for the network or the server,
// ClientFix for the client, per class.
func ExampleDiagnosis_Fix() {
	for _, c := range []pmtu.Class{pmtu.ClassRefused, pmtu.ClassSplitIntolerant} {
		d := pmtu.Diagnosis{Class: c}
		fmt.Printf("%s:\n  network: %.60s…\n  client: %q\n", c, d.Fix(), c.ClientFix())
	}
	// Output:
	// hello refused after reading:
	//   network: ask whoever runs the box or server that read the ClientHello…
	//   client: ""
	// split-intolerant middlebox:
	//   network: update or exempt the TLS inspection of the firewall or IPS o…
	//   client: "send a ClientHello that fits one segment: fitshake's tlsdial.Dialer does (its pq-compact hello keeps post-quantum); with crypto/tls, CurvePreferences without X25519MLKEM768 or GODEBUG=tlsmlkem=0 (no post-quantum)"
}

// A command-line tool keeps what it learns for its next run, per network.
func ExampleOpenFileCache() {
	path, err := pmtu.DefaultFilePath() // os.UserCacheDir()/fitshake/paths.json
	if err != nil {
		log.Fatal(err)
	}
	cache, err := pmtu.OpenFileCache(path, &pmtu.FileOptions{Logger: slog.Default()})
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()       // writes what is pending before the process exits
	pmtu.DefaultCache = cache // every dialer without a Cache of its own uses it

	// Dialers key entries with KeyFor: the destination, and the local
	// network (the route to it) the dial leaves from.
	k := pmtu.KeyFor("tcp", "example.com:443")
	if e, ok := cache.Load(k); ok {
		fmt.Printf("on %q, %s starts clamped to MTU %d\n", k.Local, k.Remote, e.MTU)
	}
}

// A network's prior: two sites dialed from the office needed a clamp, so a
// third destination there starts clamped; the café has shown nothing.
func ExampleCache_LoadNetwork() {
	office := "dev wg0 via 10.0.0.1 src 10.0.0.7" // pmtu.LocalNetwork names it
	c := &pmtu.Cache{}
	c.Store(pmtu.Key{Local: office, Remote: "tcp|git.example.com:443"}, pmtu.Entry{MTU: 1400})
	_, ok := c.LoadNetwork(office)
	fmt.Println("one site:", ok)
	c.Store(pmtu.Key{Local: office, Remote: "tcp|api.example.org:443"}, pmtu.Entry{MTU: 1280})
	p, ok := c.LoadNetwork(office)
	fmt.Println("two sites:", ok, p.MTU, p.FromNetwork)
	_, ok = c.LoadNetwork("dev wlan0 via 192.168.1.1 src 192.168.1.23")
	fmt.Println("the café:", ok)
	// Output:
	// one site: false
	// two sites: true 1400 true
	// the café: false
}

// A server whose clients sit behind a 1400-byte path that drops ICMP
// clamps every connection it accepts, both ways, without their help.
func ExampleListenConfigWithMTU() {
	lc, err := pmtu.ListenConfigWithMTU(nil, 1400)
	if err != nil {
		log.Fatal(err) // pmtu.ErrUnsupported outside Linux
	}
	ln, err := lc.Listen(context.Background(), "tcp", ":8443")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	_ = tls.NewListener(ln, &tls.Config{}) // Certificates: as usual
}
