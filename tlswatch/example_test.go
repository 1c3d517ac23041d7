package tlswatch_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/fitshake/fitshake/tlswatch"
)

// Watch an HTTPS server's handshakes and read what the watcher saw: the
// status page (HTML, or JSON as here) serves the same Status.
func Example() {
	w := &tlswatch.Watcher{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { io.WriteString(rw, "hello\n") }),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{selfSigned()}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.ServeTLS(w.Wrap(ln), "", "")
	defer srv.Close()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	client.CloseIdleConnections()

	// In a server: http.ListenAndServe("127.0.0.1:8081", w) on an admin port.
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest("GET", "/status.json", nil))
	fmt.Println(rec.Header().Get("Content-Type"))
	for _, p := range w.Status().Prefixes {
		fmt.Printf("%s: %d handshakes, %d completed, %d failed, class %s, clamped %t\n",
			p.Prefix, p.Handshakes, p.Completed, p.Failed, p.Class, p.Clamped)
	}
	// Output:
	// application/json
	// 127.0.0.0/24: 1 handshakes, 1 completed, 0 failed, class healthy, clamped false
}

// The self-fix: after two connections from a prefix lost to a black hole,
// the watcher tells its Clamp (the listener machinery that clamps the MSS
// of new connections from chosen prefixes) to clamp that prefix for an
// hour; the Trace hooks count what happens, for metrics.
func ExampleWatcher_selfFix() {
	w := &tlswatch.Watcher{
		Clamp:  clampLogger{},
		Policy: tlswatch.Policy{After: 2, TTL: time.Hour, MSS: 1360},
		Trace: &tlswatch.Trace{
			Handshake: func(h tlswatch.HandshakeInfo) { /* count h.Class */ },
			Prefix:    func(p tlswatch.PrefixInfo) { /* a gauge of failing prefixes */ },
			Clamp:     func(c tlswatch.ClampInfo) { /* a gauge of len(c.Prefixes) */ },
		},
	}
	ln, err := net.Listen("tcp", ":8443")
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned()}}
	log.Fatal(http.Serve(tls.NewListener(w.Wrap(ln), cfg), nil))
}

// clampLogger stands for the listener machinery.
type clampLogger struct{}

func (clampLogger) SetClamped(p []netip.Prefix) error {
	log.Println("clamp:", p)
	return nil
}

// selfSigned makes a throwaway certificate for the example.
func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
