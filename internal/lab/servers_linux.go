package lab

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Ports of the lab's long-lived servers (openssl s_server gets NextPort).
const (
	PortNginxSmall = 443  // nginx, small ECDSA certificate
	PortNginxLong  = 8443 // nginx, RSA-4096 leaf + 2 intermediates
	PortGo         = 9443 // Go crypto/tls + net/http, small ECDSA certificate
)

// StartNginx starts nginx in the server namespace with its own prefix,
// configuration, pid file and logs under Dir()/nginx: TLS 1.2 and 1.3,
// HTTP/2, no session resumption (every handshake is full), the small
// certificate on PortNginxSmall and the long chain on PortNginxLong, both
// families. It runs as a single process (master_process off), so nothing
// it starts can outlive it. It returns once all four sockets listen.
// "GET /" answers 200 with "ok nginx-small HTTP/2.0" or similar.
func (l *Lab) StartNginx() (*Process, error) {
	pki, err := l.PKI()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(l.dir, "nginx")
	for _, d := range []string{"logs", "tmp", "conf"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	listen := func(port int) string {
		return fmt.Sprintf("listen %s ssl http2; listen %s ssl http2;",
			l.Addr(IPv4, port), l.Addr(IPv6, port))
	}
	conf := fmt.Sprintf(`# fitshake lab nginx (generated)
daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path %[1]s/tmp/body;
	proxy_temp_path %[1]s/tmp/proxy;
	fastcgi_temp_path %[1]s/tmp/fastcgi;
	uwsgi_temp_path %[1]s/tmp/uwsgi;
	scgi_temp_path %[1]s/tmp/scgi;
	ssl_protocols TLSv1.2 TLSv1.3;
	ssl_session_cache off;
	ssl_session_tickets off;
	default_type text/plain;
	server {
		%[2]s
		server_name %[3]s;
		ssl_certificate %[4]s;
		ssl_certificate_key %[5]s;
		location / { return 200 "ok nginx-small $server_protocol\n"; }
	}
	server {
		%[6]s
		server_name %[3]s;
		ssl_certificate %[7]s;
		ssl_certificate_key %[8]s;
		location / { return 200 "ok nginx-long $server_protocol\n"; }
	}
}
`, dir, listen(PortNginxSmall), ServerName, pki.SmallCertFile, pki.SmallKeyFile,
		listen(PortNginxLong), pki.LongChainFile, pki.LongKeyFile)
	confFile := filepath.Join(dir, "conf", "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	errLog := filepath.Join(dir, "logs", "error.log")
	p, err := l.Start(Server, toolPath("nginx"), "-e", errLog, "-p", dir, "-c", confFile)
	if err != nil {
		return nil, err
	}
	want := []string{
		l.Addr(IPv4, PortNginxSmall), l.Addr(IPv6, PortNginxSmall),
		l.Addr(IPv4, PortNginxLong), l.Addr(IPv6, PortNginxLong),
	}
	if err := l.waitListening(p, want, 15*time.Second); err != nil {
		log, _ := os.ReadFile(errLog)
		p.Stop()
		return nil, fmt.Errorf("lab: nginx: %w\noutput: %s\nerror.log: %s", err, p.Output(), log)
	}
	return p, nil
}

// waitListening polls ss in the server namespace until a TCP socket
// listens on every address in want, or p exits, or d passes.
func (l *Lab) waitListening(p *Process, want []string, d time.Duration) error {
	return l.waitListeningIn(Server, p, want, d)
}

// waitListeningIn is waitListening in the namespace of side s.
func (l *Lab) waitListeningIn(s Side, p *Process, want []string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if done, err := p.Exited(); done {
			return fmt.Errorf("exited before listening: %v", err)
		}
		out, err := l.Command(context.Background(), s, toolPath("ss"), "-Hltn").Output()
		if err == nil && listensOnAll(string(out), want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %v after %v (ss: %s)", want, d, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listensOnAll reports whether the output of "ss -Hltn" has a listening
// socket for every host:port in want: on that address itself, or on the
// wildcard of its family ("0.0.0.0:P", "[::]:P", "*:P").
func listensOnAll(ss string, want []string) bool {
	have := map[string]bool{}
	for _, line := range strings.Split(ss, "\n") {
		if f := strings.Fields(line); len(f) >= 4 {
			have[f[3]] = true
		}
	}
	for _, w := range want {
		host, port, err := net.SplitHostPort(w)
		if err != nil {
			return false
		}
		wild := "0.0.0.0"
		if strings.Contains(host, ":") {
			wild = "::"
		}
		if !have[w] && !have[net.JoinHostPort(wild, port)] && !have["*:"+port] {
			return false
		}
	}
	return true
}

// OpenSSLPath is the file openssl s_server serves (an HTTP/1.0 200 with a
// one-line body).
const OpenSSLPath = "/ok.txt"

// StartOpenSSL starts "openssl s_server -WWW" in the server namespace on
// family f and the given port (use NextPort), with certificate chain c and
// the extra s_server arguments (e.g. "-tls1_2", "-groups", "P-256"), and
// returns once it accepts. It serves OpenSSLPath (and, unless extra has
// -alpn, ALPN nothing, so HTTP clients speak HTTP/1.1 to it). s_server
// serves one connection at a time: a connection stuck in its handshake
// blocks the next one, so start one per client.
func (l *Lab) StartOpenSSL(f Family, port int, c Chain, extra ...string) (*Process, error) {
	pki, err := l.PKI()
	if err != nil {
		return nil, err
	}
	www := filepath.Join(l.dir, "openssl-www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return nil, err
	}
	// Replaced, never rewritten in place: the s_servers of parallel
	// clients serve this file while another one starts (a truncating
	// write let one serve an empty body).
	if err := writeAtomic(filepath.Join(www, OpenSSLPath), []byte("ok openssl\n")); err != nil {
		return nil, err
	}
	args := []string{"s_server", "-" + strings.TrimPrefix(string(f), "ipv"), "-accept", l.Addr(f, port), "-WWW"}
	if c == Long {
		args = append(args, "-cert", pki.LongLeafFile, "-key", pki.LongKeyFile, "-cert_chain", pki.LongInterFile)
	} else {
		cert, key := pki.Files(c)
		args = append(args, "-cert", cert, "-key", key)
	}
	args = append(args, extra...)
	cmd := l.Command(context.Background(), Server, toolPath("openssl"), args...)
	cmd.Dir = www
	p := &Process{l: l, name: "openssl s_server", cmd: cmd, done: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = lockedWriter{p}
	if err := l.startProcess(p); err != nil {
		return nil, err
	}
	accepted := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			line := sc.Text()
			lockedWriter{p}.Write([]byte(line + "\n"))
			if !ok && strings.TrimSpace(line) == "ACCEPT" {
				ok = true
				accepted <- true
			}
		}
		if !ok {
			accepted <- false
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case ok := <-accepted:
		if ok {
			return p, nil
		}
	case <-time.After(15 * time.Second):
	}
	p.Stop()
	return nil, fmt.Errorf("lab: openssl s_server %s did not start: %s", l.Addr(f, port), p.Output())
}

// goServerName is the registered name of the Go TLS server.
const goServerName = "lab-go-https"

// GoServerArgs are the arguments of the Go crypto/tls server.
type GoServerArgs struct {
	CertFile, KeyFile string
	Addrs             []string
	// Delay holds every handshake back before the server's first flight:
	// a slow server on a healthy path (the client's hello is acked by the
	// kernel, then nothing comes back for Delay).
	Delay time.Duration
}

func init() {
	RegisterServer(goServerName, goServer)
}

// goServer serves HTTPS (HTTP/2 and HTTP/1.1, TLS 1.2 and 1.3, crypto/tls
// defaults: X25519MLKEM768 preferred) on every address until ctx ends.
func goServer(ctx context.Context, raw json.RawMessage, ready func(any)) error {
	var a GoServerArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "ok go %s\n", r.Proto)
		}),
		TLSConfig: &tls.Config{
			Certificates:           []tls.Certificate{cert},
			NextProtos:             []string{"h2", "http/1.1"},
			SessionTicketsDisabled: true,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				time.Sleep(a.Delay)
				return nil, nil
			},
		},
		ReadHeaderTimeout: 30 * time.Second,
	}
	return serveHTTP(ctx, srv, a.Addrs, ready, func(ln net.Listener, _ string) error { return srv.ServeTLS(ln, "", "") })
}

// writeAtomic writes b to a new file beside name and renames it over name,
// so that a reader sees the old content or the new, never a partial one.
func writeAtomic(name string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), name)
}

// serveHTTP listens on every address, serves srv there with serve, says
// it is ready, and runs until ctx ends (nil) or a listener fails.
func serveHTTP(ctx context.Context, srv *http.Server, addrs []string, ready func(any), serve func(ln net.Listener, addr string) error) error {
	errc := make(chan error, len(addrs))
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		go func() { errc <- serve(ln, addr) }()
	}
	ready(map[string]any{"addrs": addrs, "pid": os.Getpid()})
	select {
	case <-ctx.Done():
		srv.Close()
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// StartGoServer starts the Go crypto/tls + net/http server (the test
// binary re-executed in the server namespace) on PortGo, both families,
// with the small certificate; it serves HTTP/2 and HTTP/1.1. The test
// package's TestMain must call Main.
func (l *Lab) StartGoServer() (*Process, error) {
	return l.StartSlowGoServer(PortGo, 0)
}

// StartSlowGoServer is StartGoServer on port, holding every handshake
// back for delay before the server's first flight.
func (l *Lab) StartSlowGoServer(port int, delay time.Duration) (*Process, error) {
	pki, err := l.PKI()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, _, err := l.StartServer(ctx, goServerName, GoServerArgs{
		CertFile: pki.SmallCertFile,
		KeyFile:  pki.SmallKeyFile,
		Addrs:    []string{l.Addr(IPv4, port), l.Addr(IPv6, port)},
		Delay:    delay,
	})
	return p, err
}
