package lab

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Ports of the Squid scenario, in the router namespace.
const (
	// SquidInterceptedPort is the server port whose flows from the
	// client the router redirects into Squid, on every address, both
	// families: PortNginxSmall. Other ports are forwarded as in Healthy.
	SquidInterceptedPort = PortNginxSmall
	// SquidPort is Squid's intercepting https_port, on the router's
	// client-side addresses (198.18.0.1 and fd00:198:18::1).
	SquidPort = 3129
	// squidHTTPPort is a forward-proxy port on the router's loopback,
	// which Squid wants beside intercepting ports; nothing uses it.
	squidHTTPPort = 3128
)

// squidProc is the Squid scenario's proxy and the resolver it asks.
type squidProc struct {
	dir      string // Dir()/squid: configuration, CA, logs, pid file
	proxy    *Process
	resolver *Process
}

// squidRules returns the router's ruleset of the Squid scenario: the
// client's flows to SquidInterceptedPort redirected to Squid, both
// families, and with Squid.FarMTU the black hole beyond it. Squid's own
// connections to the server start in the router: they leave through the
// output hook and their replies arrive through the input hook, never the
// forward hook.
func (l *Lab) squidRules() string {
	var b strings.Builder
	fmt.Fprintf(&b, `table inet fitlab {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		%s tcp dport %d counter redirect to :%d comment "squid: intercepted"
	}
`, clientIIF, SquidInterceptedPort, SquidPort)
	if n := l.cfg.Squid.FarMTU; n > 0 {
		fmt.Fprintf(&b, `	chain output {
		type filter hook output priority 0; policy accept;
		oifname "r1" meta length > %[1]d counter drop comment "squid: far blackhole"
	}
	chain input {
		type filter hook input priority 0; policy accept;
		iifname "r1" meta length > %[1]d counter drop comment "squid: far blackhole"
	}
`, n)
	}
	b.WriteString("}\n")
	return b.String()
}

// startSquid starts the Squid scenario's resolver and proxy in the router
// namespace and returns once Squid listens. Both are the lab's processes,
// stopped by Close; so is the cleanup of Squid's shared memory.
func (l *Lab) startSquid() error {
	if toolPath("squid") == "squid" {
		return errors.New("lab: the Squid scenario needs squid (Debian: apt-get install squid-openssl)")
	}
	usr, err := squidUser()
	if err != nil {
		return err
	}
	dir := filepath.Join(l.dir, "squid")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Squid runs as usr: it must reach its directory.
	if err := allowTraverse(filepath.Dir(dir)); err != nil {
		return err
	}
	caFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if err := writeSquidCA(caFile, keyFile); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, _, err := l.startServerIn(ctx, Router, resolverName, resolverArgs{
		Addr: "127.0.0.1:53", Zone: ServerName, A: serverIPv4, AAAA: serverIPv6,
		Delay: l.cfg.Squid.ResolverDelay,
	})
	if err != nil {
		return fmt.Errorf("lab: squid's resolver: %w", err)
	}
	sp := &squidProc{dir: dir, resolver: res}
	conf := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(conf, []byte(l.squidConf(dir, usr.Username, caFile, keyFile)), 0o644); err != nil {
		return err
	}
	uid, _ := strconv.Atoi(usr.Uid)
	gid, _ := strconv.Atoi(usr.Gid)
	for _, f := range []string{dir, conf, caFile, keyFile} {
		if err := os.Chown(f, uid, gid); err != nil {
			return err
		}
	}
	// Squid keeps shared memory segments named after its service name
	// in /dev/shm (the host's, not the namespace's): the lab's prefix
	// keeps them apart from other Squids, and Close removes what a
	// killed Squid left.
	service := l.prefix
	l.mu.Lock()
	l.atClose = append(l.atClose, func() {
		shm, _ := filepath.Glob(filepath.Join("/dev/shm", service+"-*"))
		for _, f := range shm {
			os.Remove(f)
		}
	})
	l.mu.Unlock()
	p, err := l.Start(Router, toolPath("squid"), "-N", "-n", service, "-f", conf)
	if err != nil {
		return err
	}
	sp.proxy = p
	want := []string{
		net.JoinHostPort(routerC4.String(), strconv.Itoa(SquidPort)),
		net.JoinHostPort(routerC6.String(), strconv.Itoa(SquidPort)),
		net.JoinHostPort("127.0.0.1", strconv.Itoa(squidHTTPPort)),
	}
	if err := l.waitListeningIn(Router, p, want, 20*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "cache.log"))
		p.Stop()
		return fmt.Errorf("lab: squid: %w\noutput: %s\ncache.log: %s", err, p.Output(), tail(string(log), 4096))
	}
	l.mu.Lock()
	l.squid = sp
	l.mu.Unlock()
	return nil
}

// squidConf returns Squid's configuration: an intercepting SslBump port on
// each of the router's client-side addresses that peeks at the
// ClientHello (step 1), terminates the names of Squid.Block and splices
// everything else to the client's original destination; the lab's
// resolver; no cache, no helpers, no system file.
func (l *Lab) squidConf(dir, usr, caFile, keyFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# fitshake lab squid (generated)\n")
	fmt.Fprintf(&b, "http_port 127.0.0.1:%d\n", squidHTTPPort)
	for _, a := range []netip.Addr{routerC4, routerC6} {
		fmt.Fprintf(&b, "https_port %s intercept ssl-bump tls-cert=%s tls-key=%s generate-host-certificates=off\n",
			net.JoinHostPort(a.String(), strconv.Itoa(SquidPort)), caFile, keyFile)
	}
	b.WriteString("acl step1 at_step SslBump1\n")
	if len(l.cfg.Squid.Block) > 0 {
		fmt.Fprintf(&b, "acl blocked ssl::server_name %s\n", strings.Join(l.cfg.Squid.Block, " "))
	}
	fmt.Fprintf(&b, "acl labclients src %s %s\n", netip.PrefixFrom(clientIPv4, 24).Masked(), netip.PrefixFrom(clientIPv6, 64).Masked())
	b.WriteString("ssl_bump peek step1\n")
	if len(l.cfg.Squid.Block) > 0 {
		b.WriteString("ssl_bump terminate blocked\n")
	}
	b.WriteString("ssl_bump splice all\n")
	fmt.Fprintf(&b, `http_access allow labclients
http_access deny all
cache deny all
cache_mem 8 MB
dns_nameservers 127.0.0.1
hosts_file none
pinger_enable off
shutdown_lifetime 0 seconds
visible_hostname fitlab-squid
cache_effective_user %[2]s
pid_filename %[1]s/squid.pid
cache_log %[1]s/cache.log
access_log stdio:%[1]s/access.log
cache_store_log none
coredump_dir %[1]s
`, dir, usr)
	return b.String()
}

// squidUser is the unprivileged user Squid runs as: Debian's "proxy", or
// "nobody" (Squid refuses to run as root).
func squidUser() (*user.User, error) {
	for _, name := range []string{"proxy", "nobody"} {
		if u, err := user.Lookup(name); err == nil {
			return u, nil
		}
	}
	return nil, errors.New("lab: no user proxy or nobody for squid to run as")
}

// allowTraverse gives everyone search (x) permission on dir and on each
// of its parents that lacks it (t.TempDir's parent is 0700), and nothing
// else: so that a server running as another user reaches a directory
// under Dir().
func allowTraverse(dir string) error {
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 != 0 {
			continue
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
			return err
		}
	}
	return nil
}

// writeSquidCA writes a new self-signed ECDSA P-256 CA certificate and its
// key: the certificate of Squid's ssl-bump ports. Peek and splice, and
// terminate, never show it to a client (Squid bumps nothing), but Squid
// wants one.
func writeSquidCA(certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fitshake lab squid CA", Organization: []string{"fitshake lab"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}

// squidProc returns the Squid scenario's Squid, or an error in any other
// scenario.
func (l *Lab) squidProc() (*squidProc, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.squid == nil {
		return nil, fmt.Errorf("lab: %s runs no squid", l.cfg)
	}
	return l.squid, nil
}

// SquidRequest is a line of Squid's access.log (its native format): one
// intercepted connection, logged when it ends.
type SquidRequest struct {
	// End is when the connection ended; Elapsed how long Squid had it.
	End     time.Time
	Elapsed time.Duration
	Client  string // the client's address
	// Result is Squid's result code and the HTTP status it stands for:
	// "TCP_TUNNEL/200" for a spliced connection, "NONE_NONE/000" for a
	// connection that ended before Squid chose a server (a terminated
	// one, or the first step's record of a peek).
	Result string
	Bytes  int64
	// Method and URL are those of Squid's fake CONNECT: "CONNECT", and
	// the server name of the hello (or the original destination) with
	// the port.
	Method, URL string
	// Hierarchy is how Squid reached the server: "ORIGINAL_DST/198.18.1.2"
	// for a splice to the client's original destination, "HIER_NONE/-".
	Hierarchy string
}

// SquidAccessLog reads Squid's access.log so far (the Squid scenario
// only).
func (l *Lab) SquidAccessLog() ([]SquidRequest, error) {
	sp, err := l.squidProc()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(sp.dir, "access.log"))
	if err != nil {
		return nil, err
	}
	var out []SquidRequest
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 {
			continue
		}
		ts, err1 := strconv.ParseFloat(f[0], 64)
		ms, err2 := strconv.ParseInt(f[1], 10, 64)
		n, err3 := strconv.ParseInt(f[4], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		out = append(out, SquidRequest{
			End:     time.UnixMilli(int64(ts * 1000)),
			Elapsed: time.Duration(ms) * time.Millisecond,
			Client:  f[2], Result: f[3], Bytes: n, Method: f[5], URL: f[6], Hierarchy: f[8],
		})
	}
	return out, nil
}

// SquidCacheLog returns Squid's cache.log (its own messages) so far (the
// Squid scenario only).
func (l *Lab) SquidCacheLog() (string, error) {
	sp, err := l.squidProc()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(sp.dir, "cache.log"))
	return string(b), err
}

// ResolverLog returns what the Squid scenario's DNS server got and
// answered so far, in order.
func (l *Lab) ResolverLog() ([]ResolverEvent, error) {
	sp, err := l.squidProc()
	if err != nil {
		return nil, err
	}
	var out []ResolverEvent
	for _, line := range strings.Split(sp.resolver.Output(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e ResolverEvent
		if json.Unmarshal([]byte(line), &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// SquidPid returns the process id of the Squid scenario's Squid.
func (l *Lab) SquidPid() (int, error) {
	sp, err := l.squidProc()
	if err != nil {
		return 0, err
	}
	return sp.proxy.Pid(), nil
}
