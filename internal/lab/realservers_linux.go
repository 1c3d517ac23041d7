package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Ports of the interop matrix's long-lived servers, beside PortNginxSmall
// and PortGo (openssl s_server gets NextPort).
const (
	PortApache   = 10443 // apache2, mod_ssl + mod_http2
	PortHAProxy  = 11443 // haproxy, TLS termination
	PortGnuTLS   = 12443 // gnutls-serv --http
	PortLighttpd = 13443 // lighttpd, mod_openssl
)

// RealServer is a server of the interop matrix: a TLS server from a Debian
// package nobody here wrote, configured by the lab, or the lab's own Go
// crypto/tls server as the reference. Every one serves the small ECDSA P-256
// certificate unless Chain says otherwise.
type RealServer struct {
	// Name is short and stable: "apache2", "openssl-tls12-p384", …
	Name string
	// Note says what the server demands of a client's hello, when it
	// demands more than TLS 1.2 or 1.3 with X25519.
	Note string
	// Version and ALPN are what a client offering TLS 1.2 and 1.3 and
	// ALPN h2, http/1.1 negotiates with it: "TLS 1.3", "h2"; ALPN "" means
	// none.
	Version, ALPN string
	// Group is the key exchange group the server forces ("CurveP256"), or
	// "" when the client's preference decides.
	Group string
	// Port is where a long-lived server listens in both families; 0 for
	// an openssl s_server, which serves one connection at a time and is
	// started per client by Endpoint.
	Port int
	// Path is the URL path that answers 200.
	Path string
	// Chain and OpenSSL are an openssl s_server's certificate and extra
	// arguments.
	Chain   Chain
	OpenSSL []string

	start func(*Lab) (*Process, error) // a long-lived server's launcher
}

// String returns the name.
func (s RealServer) String() string { return s.Name }

// alpnHTTP1 makes openssl s_server -WWW (an HTTP/1.0 server) answer ALPN
// honestly.
var alpnHTTP1 = []string{"-alpn", "http/1.1"}

// ecdsaTLS12Note is the Note of a TLS 1.2-only server with an ECDSA
// certificate on curve.
func ecdsaTLS12Note(curve string) string {
	return "TLS 1.2 only, ECDSA " + curve + " certificate: OpenSSL uses it only for a client that lists " +
		curve + " in supported_groups (RFC 8422 §5.1; else: no shared cipher, handshake_failure)"
}

// onlyGroupNote is the Note of a TLS 1.3-only server that accepts the
// single key exchange group g.
func onlyGroupNote(g string) string {
	return "TLS 1.3 only, key exchange " + g + " only: the client must list " + g +
		" in supported_groups (without a " + g + " key share it gets a HelloRetryRequest)"
}

// RealServers lists the interop matrix's servers: nginx, apache2, haproxy,
// gnutls-serv and lighttpd (TLS 1.2 and 1.3, their own defaults
// otherwise); openssl s_server held to TLS 1.2 with an ECDSA P-256, an
// ECDSA P-384 and an RSA certificate, held to TLS 1.3 with the single group
// P-256 (a client without a P-256 key share gets a HelloRetryRequest) or
// P-384, and with no ALPN at all; and the lab's Go crypto/tls server.
func RealServers() []RealServer {
	ss := []RealServer{
		{Name: "nginx", Version: "TLS 1.3", ALPN: "h2", Port: PortNginxSmall, start: (*Lab).StartNginx},
		{Name: "apache2", Version: "TLS 1.3", ALPN: "h2", Port: PortApache, start: (*Lab).StartApache},
		{Name: "haproxy", Version: "TLS 1.3", ALPN: "h2", Port: PortHAProxy, start: (*Lab).StartHAProxy},
		{Name: "gnutls-serv", Version: "TLS 1.3", ALPN: "http/1.1", Port: PortGnuTLS, start: (*Lab).StartGnuTLS},
		{Name: "lighttpd", Version: "TLS 1.3", ALPN: "h2", Port: PortLighttpd, start: (*Lab).StartLighttpd},
		{Name: "openssl-tls12-p256", Version: "TLS 1.2", ALPN: "http/1.1", Chain: Small,
			Note:    ecdsaTLS12Note("P-256"),
			OpenSSL: append([]string{"-tls1_2"}, alpnHTTP1...)},
		{Name: "openssl-tls12-p384", Version: "TLS 1.2", ALPN: "http/1.1", Chain: P384,
			Note:    ecdsaTLS12Note("P-384"),
			OpenSSL: append([]string{"-tls1_2"}, alpnHTTP1...)},
		{Name: "openssl-tls12-rsa", Version: "TLS 1.2", ALPN: "http/1.1", Chain: RSA,
			OpenSSL: append([]string{"-tls1_2"}, alpnHTTP1...)},
		{Name: "openssl-tls13-p256", Version: "TLS 1.3", ALPN: "http/1.1", Group: "CurveP256", Chain: Small,
			Note:    onlyGroupNote("P-256"),
			OpenSSL: append([]string{"-tls1_3", "-groups", "P-256"}, alpnHTTP1...)},
		{Name: "openssl-tls13-p384", Version: "TLS 1.3", ALPN: "http/1.1", Group: "CurveP384", Chain: Small,
			Note:    onlyGroupNote("P-384"),
			OpenSSL: append([]string{"-tls1_3", "-groups", "P-384"}, alpnHTTP1...)},
		{Name: "openssl-no-alpn", Version: "TLS 1.3", Chain: Small, Note: "selects no ALPN protocol"},
		{Name: "go", Version: "TLS 1.3", ALPN: "h2", Port: PortGo, start: (*Lab).StartGoServer},
	}
	for i := range ss {
		ss[i].Path = "/"
		if ss[i].Port == 0 {
			ss[i].Path = OpenSSLPath
		}
	}
	return ss
}

// StartRealServers starts the long-lived servers of ss (those with a Port)
// in the server namespace, in parallel, and returns once all of them
// listen in both families.
func (l *Lab) StartRealServers(ss []RealServer) error {
	errs := make([]error, len(ss))
	var wg sync.WaitGroup
	for i, s := range ss {
		if s.start == nil {
			continue
		}
		wg.Go(func() {
			if _, err := s.start(l); err != nil {
				errs[i] = fmt.Errorf("%s: %w", s.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Endpoint returns the address of s in family f for one client: that of
// a long-lived server (started by StartRealServers), or that of a new
// openssl s_server on NextPort. Call stop when the client is done; the
// lab's Close stops what is left.
func (l *Lab) Endpoint(s RealServer, f Family) (addr string, stop func(), err error) {
	if s.Port != 0 {
		return l.Addr(f, s.Port), func() {}, nil
	}
	port := l.NextPort()
	p, err := l.StartOpenSSL(f, port, s.Chain, s.OpenSSL...)
	if err != nil {
		return "", nil, err
	}
	return l.Addr(f, port), func() { p.Stop() }, nil
}

// serverSetup returns what a real server's start needs: the lab's PKI,
// and Dir()/name, created with Dir()/name/sub for each sub.
func (l *Lab) serverSetup(name string, sub ...string) (*PKI, string, error) {
	pki, err := l.PKI()
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(l.dir, name)
	for _, d := range append([]string{""}, sub...) {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, "", err
		}
	}
	return pki, dir, nil
}

// startListening starts argv in the server namespace and returns once it
// listens on port in both families. On failure it stops the process and
// returns its output and the log file's content.
func (l *Lab) startListening(port int, logFile string, argv ...string) (*Process, error) {
	p, err := l.Start(Server, argv[0], argv[1:]...)
	if err != nil {
		return nil, err
	}
	want := []string{l.Addr(IPv4, port), l.Addr(IPv6, port)}
	if err := l.waitListening(p, want, 15*time.Second); err != nil {
		p.Stop()
		log, _ := os.ReadFile(logFile)
		return nil, fmt.Errorf("lab: %s: %w\noutput: %s\nlog: %s", filepath.Base(argv[0]), err, p.Output(), log)
	}
	return p, nil
}

// StartApache starts apache2 in the server namespace on PortApache, both
// families, as one foreground process (apache2 -X: no children to
// outlive it) with its own configuration, pid file and error log under
// Dir()/apache2, never the system's: event MPM, mod_ssl (TLS 1.2 and 1.3,
// no session cache or tickets: every handshake is full), mod_http2
// (Protocols h2 http/1.1). It serves no file (it drops to www-data, which
// can read nothing in the lab's directory): mod_rewrite answers every path
// with 200 and the ErrorDocument "ok apache2".
func (l *Lab) StartApache() (*Process, error) {
	pki, dir, err := l.serverSetup("apache2", "run")
	if err != nil {
		return nil, err
	}
	mods := "/usr/lib/apache2/modules"
	conf := fmt.Sprintf(`# fitshake lab apache2 (generated)
ServerRoot %[1]s
DefaultRuntimeDir %[1]s/run
PidFile %[1]s/run/apache2.pid
ErrorLog %[1]s/error.log
LogLevel warn
ServerName %[2]s
User www-data
Group www-data
LoadModule mpm_event_module %[3]s/mod_mpm_event.so
LoadModule authz_core_module %[3]s/mod_authz_core.so
LoadModule ssl_module %[3]s/mod_ssl.so
LoadModule http2_module %[3]s/mod_http2.so
LoadModule rewrite_module %[3]s/mod_rewrite.so
Listen %[4]s
Listen %[5]s
Protocols h2 http/1.1
SSLProtocol -all +TLSv1.2 +TLSv1.3
SSLSessionCache none
SSLSessionTickets off
DocumentRoot %[1]s/run
<Directory />
	AllowOverride None
</Directory>
ErrorDocument 200 "ok apache2"
<VirtualHost *:%[6]d>
	SSLEngine on
	SSLCertificateFile %[7]s
	SSLCertificateKeyFile %[8]s
	RewriteEngine on
	RewriteRule ^ - [R=200,L]
</VirtualHost>
`, dir, ServerName, mods, l.Addr(IPv4, PortApache), l.Addr(IPv6, PortApache), PortApache,
		pki.SmallCertFile, pki.SmallKeyFile)
	confFile := filepath.Join(dir, "apache2.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return l.startListening(PortApache, filepath.Join(dir, "error.log"),
		toolPath("apache2"), "-X", "-DFOREGROUND", "-d", dir, "-f", confFile)
}

// StartHAProxy starts haproxy in the foreground (-db) in the server
// namespace on PortHAProxy, both families: TLS termination (TLS 1.2 and
// 1.3, ALPN h2 and http/1.1) in front of no backend, every request
// answered by "http-request return" with 200 and "ok haproxy".
func (l *Lab) StartHAProxy() (*Process, error) {
	pki, dir, err := l.serverSetup("haproxy")
	if err != nil {
		return nil, err
	}
	// haproxy wants the certificate and its key in one file.
	pem := filepath.Join(dir, "small.pem")
	if err := concatFiles(pem, pki.SmallCertFile, pki.SmallKeyFile); err != nil {
		return nil, err
	}
	bind := func(f Family) string {
		return fmt.Sprintf("bind %s ssl crt %s alpn h2,http/1.1", l.Addr(f, PortHAProxy), pem)
	}
	conf := fmt.Sprintf(`# fitshake lab haproxy (generated)
global
	ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
defaults
	mode http
	timeout connect 5s
	timeout client 30s
	timeout server 30s
frontend lab
	%s
	%s
	http-request return status 200 content-type text/plain string "ok haproxy"
`, bind(IPv4), bind(IPv6))
	confFile := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return l.startListening(PortHAProxy, "", toolPath("haproxy"), "-db", "-f", confFile)
}

// StartGnuTLS starts gnutls-serv --http in the server namespace on
// PortGnuTLS (it listens on every address of the namespace, both
// families), GnuTLS's default priorities, no client certificate request,
// ALPN http/1.1, serving a one-line page.
func (l *Lab) StartGnuTLS() (*Process, error) {
	pki, dir, err := l.serverSetup("gnutls")
	if err != nil {
		return nil, err
	}
	page := filepath.Join(dir, "ok.txt")
	if err := os.WriteFile(page, []byte("ok gnutls-serv\n"), 0o644); err != nil {
		return nil, err
	}
	return l.startListening(PortGnuTLS, "", toolPath("gnutls-serv"), "--http", "--httpdata", page,
		"-p", strconv.Itoa(PortGnuTLS), "-a", "--alpn", "http/1.1",
		"--x509certfile", pki.SmallCertFile, "--x509keyfile", pki.SmallKeyFile)
}

// StartLighttpd starts lighttpd in the foreground (-D) in the server
// namespace on PortLighttpd, both families, with mod_openssl (TLS 1.2 and
// 1.3) and its default HTTP/2 support, serving "ok lighttpd" at /.
func (l *Lab) StartLighttpd() (*Process, error) {
	pki, dir, err := l.serverSetup("lighttpd", "www")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "index.html"), []byte("ok lighttpd\n"), 0o644); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`# fitshake lab lighttpd (generated)
server.modules = ("mod_openssl")
server.document-root = "%[1]s/www"
server.errorlog = "%[1]s/error.log"
server.bind = "%[2]s"
server.port = %[3]d
index-file.names = ("index.html")
ssl.engine = "enable"
ssl.pemfile = "%[4]s"
ssl.privkey = "%[5]s"
ssl.openssl.ssl-conf-cmd = ("MinProtocol" => "TLSv1.2", "Options" => "-SessionTicket")
$SERVER["socket"] == "[%[6]s]:%[3]d" { ssl.engine = "enable" }
`, dir, l.IP(Server, IPv4), PortLighttpd, pki.SmallCertFile, pki.SmallKeyFile, l.IP(Server, IPv6))
	confFile := filepath.Join(dir, "lighttpd.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return l.startListening(PortLighttpd, filepath.Join(dir, "error.log"), toolPath("lighttpd"), "-D", "-f", confFile)
}

// concatFiles writes the contents of srcs, one after another, to dst.
func concatFiles(dst string, srcs ...string) error {
	var b strings.Builder
	for _, s := range srcs {
		data, err := os.ReadFile(s)
		if err != nil {
			return err
		}
		b.Write(data)
	}
	return os.WriteFile(dst, []byte(b.String()), 0o600)
}
