package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Side is one of the lab's three namespaces.
type Side string

// The namespaces: PREFIXc, PREFIXr, PREFIXs.
const (
	Client Side = "c"
	Router Side = "r"
	Server Side = "s"
)

var sides = []Side{Client, Router, Server}

// Addresses of the lab (see the package diagram).
var (
	clientIPv4 = netip.MustParseAddr("198.18.0.2")
	routerC4   = netip.MustParseAddr("198.18.0.1")
	routerS4   = netip.MustParseAddr("198.18.1.1")
	serverIPv4 = netip.MustParseAddr("198.18.1.2")
	clientIPv6 = netip.MustParseAddr("fd00:198:18::2")
	routerC6   = netip.MustParseAddr("fd00:198:18::1")
	routerS6   = netip.MustParseAddr("fd00:198:18:1::1")
	serverIPv6 = netip.MustParseAddr("fd00:198:18:1::2")
)

// MAC addresses, fixed so that neighbour entries can be static.
const (
	macC0  = "02:f1:00:00:00:02"
	macR0  = "02:f1:00:00:00:01" // r0, or br0 when bridged
	macR0p = "02:f1:00:00:00:11" // the bridge port r0 when bridged
	macR1  = "02:f1:00:00:01:01" // r1, or br1 when bridged
	macR1p = "02:f1:00:00:01:11"
	macS0  = "02:f1:00:00:01:02"
)

// Lab is a running topology. Build one with New (in tests) or Open; its
// methods are safe for concurrent use.
type Lab struct {
	cfg    Config
	prefix string
	dir    string
	ownDir bool // dir was made by Open, removed by Close

	mu      sync.Mutex
	created map[Side]bool // namespaces this lab added
	procs   map[*Process]struct{}
	closed  bool
	atClose []func() // run by teardown once the processes are gone

	squid *squidProc // the Squid scenario's proxy and resolver

	closeOnce sync.Once
	closeErr  error

	pkiOnce sync.Once
	pki     *PKI
	pkiErr  error

	nextPort atomic.Int32
}

// runPrefix is this process's namespace prefix: "fl" + 5 base-36 chars.
var runPrefix = sync.OnceValue(func() string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = digits[int(b[i])%len(digits)]
	}
	return "fl" + string(b)
})

var (
	labSeq  atomic.Int32
	liveMu  sync.Mutex
	live    = map[*Lab]struct{}{}
	sigOnce sync.Once
)

// New builds the lab cfg describes, or fails t. It calls Require first, and
// registers Close with t.Cleanup; the lab's files live in t.TempDir().
func New(t testing.TB, cfg Config) *Lab {
	t.Helper()
	Require(t)
	l, err := open(cfg, t.TempDir())
	if l != nil {
		t.Cleanup(func() {
			if err := l.Close(); err != nil {
				t.Errorf("lab %s: teardown: %v", l.prefix, err)
			}
		})
	}
	if err != nil {
		t.Fatalf("lab %s: %v", cfg, err)
	}
	t.Logf("lab %s up: namespaces %sc %sr %ss", cfg, l.prefix, l.prefix, l.prefix)
	return l
}

// Open builds the lab cfg describes. The caller must Close it. It does not
// check Require's conditions: building fails without root or tools.
func Open(cfg Config) (*Lab, error) {
	dir, err := os.MkdirTemp("", "fitlab-")
	if err != nil {
		return nil, err
	}
	l, err := open(cfg, dir)
	if l == nil {
		os.RemoveAll(dir)
		return nil, err
	}
	l.ownDir = true
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// open returns a non-nil *Lab as soon as anything may have been created, so
// that the caller can tear it down, along with any error.
func open(cfg Config, dir string) (*Lab, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Lab{
		cfg:     cfg.norm(),
		prefix:  fmt.Sprintf("%s%d", runPrefix(), labSeq.Add(1)),
		dir:     dir,
		created: map[Side]bool{},
		procs:   map[*Process]struct{}{},
	}
	l.nextPort.Store(20000)
	for _, s := range sides {
		if _, err := os.Stat("/run/netns/" + l.Namespace(s)); err == nil {
			return nil, fmt.Errorf("lab: namespace %s already exists", l.Namespace(s))
		}
	}
	installSignalHandler()
	liveMu.Lock()
	live[l] = struct{}{}
	liveMu.Unlock()
	if err := l.build(); err != nil {
		return l, err
	}
	return l, nil
}

// installSignalHandler tears every live lab down on SIGINT or SIGTERM, then
// exits the process.
func installSignalHandler() {
	sigOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			sig := <-ch
			n := closeAll()
			fmt.Fprintf(os.Stderr, "lab: %v: tore down %d lab(s)\n", sig, n)
			os.Exit(130)
		}()
	})
}

// closeAll closes every live lab and returns how many there were.
func closeAll() int {
	liveMu.Lock()
	labs := make([]*Lab, 0, len(live))
	for l := range live {
		labs = append(labs, l)
	}
	liveMu.Unlock()
	var wg sync.WaitGroup
	for _, l := range labs {
		wg.Go(func() { l.Close() })
	}
	wg.Wait()
	return len(labs)
}

// Config returns the lab's configuration, normalized (zero fields filled
// in).
func (l *Lab) Config() Config { return l.cfg }

// Prefix returns the lab's namespace prefix.
func (l *Lab) Prefix() string { return l.prefix }

// Dir returns the lab's directory (certificates, server configurations and
// logs).
func (l *Lab) Dir() string { return l.dir }

// Namespace returns the name of the namespace of side s.
func (l *Lab) Namespace(s Side) string { return l.prefix + string(s) }

// IP returns the address of side s (Client, OtherClient or Server) in
// family f; for the Router, its address on the client-side link.
func (l *Lab) IP(s Side, f Family) netip.Addr {
	switch {
	case s == OtherClient:
		return otherIP(f)
	case s == Client && f == IPv4:
		return clientIPv4
	case s == Client:
		return clientIPv6
	case s == Server && f == IPv4:
		return serverIPv4
	case s == Server:
		return serverIPv6
	case f == IPv4:
		return routerC4
	}
	return routerC6
}

// Addr returns the server's host:port in family f.
func (l *Lab) Addr(f Family, port int) string {
	return net.JoinHostPort(l.IP(Server, f).String(), strconv.Itoa(port))
}

// MaxMSS is Config().MaxMSS(f).
func (l *Lab) MaxMSS(f Family) int { return l.cfg.MaxMSS(f) }

// NextPort returns a server port no other caller of this lab got (from
// 20000 up), for per-test servers such as openssl s_server.
func (l *Lab) NextPort() int { return int(l.nextPort.Add(1)) }

// Command returns a command that runs name in the namespace of side s. It
// dies with the test binary (SIGKILL on the parent's death) and gets its
// own process group, so that a terminal's Ctrl-C reaches only the test
// binary, which then tears down.
func (l *Lab) Command(ctx context.Context, s Side, name string, arg ...string) *exec.Cmd {
	args := append([]string{"netns", "exec", l.Namespace(s), name}, arg...)
	cmd := exec.CommandContext(ctx, ipPath(), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// Sysctl sets a sysctl (e.g. "net.ipv4.tcp_mtu_probing") in the namespace
// of side s.
func (l *Lab) Sysctl(s Side, key, value string) error {
	return l.sysctls(s, map[string]string{key: value})
}

func (l *Lab) sysctls(s Side, kv map[string]string) error {
	var script strings.Builder
	script.WriteString("set -e\n")
	for k, v := range kv {
		p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
		fmt.Fprintf(&script, "printf '%%s\\n' '%s' > '%s'\n", v, p)
	}
	return l.run(s, "sh", "-c", script.String())
}

// ReadSysctl reads a sysctl in the namespace of side s.
func (l *Lab) ReadSysctl(s Side, key string) (string, error) {
	out, err := l.Command(context.Background(), s, "cat", "/proc/sys/"+strings.ReplaceAll(key, ".", "/")).Output()
	return strings.TrimSpace(string(out)), err
}

// run runs a command in the namespace of side s and returns its error with
// its output.
func (l *Lab) run(s Side, name string, arg ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return runCmd(l.Command(ctx, s, name, arg...))
}

// ip runs "ip ARGS" in the host namespace (where "-n NS" selects a lab
// namespace).
func ip(arg ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ipPath(), arg...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return runCmd(cmd)
}

func runCmd(cmd *exec.Cmd) error {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

func ipPath() string { return toolPath("ip") }

// bridged reports whether the router's addresses sit on bridges of MTU N
// (real link MTU on the router) rather than on the veths.
func (l *Lab) bridged() bool {
	return l.cfg.Scenario == PMTUDOK || l.cfg.Scenario == MTUICMPBlocked
}

// build creates the topology. On error, Close removes what was built.
func (l *Lab) build() error {
	p := l.prefix
	ns := func(s Side) string { return p + string(s) }
	for _, s := range sides {
		if err := ip("netns", "add", ns(s)); err != nil {
			return err
		}
		l.mu.Lock()
		l.created[s] = true
		l.mu.Unlock()
		if err := ip("-n", ns(s), "link", "set", "lo", "up"); err != nil {
			return err
		}
		kv := map[string]string{
			"net.ipv6.conf.all.accept_dad":     "0",
			"net.ipv6.conf.default.accept_dad": "0",
			"net.ipv4.tcp_no_metrics_save":     "1",
		}
		switch s {
		case Router:
			kv["net.ipv4.ip_forward"] = "1"
			kv["net.ipv6.conf.all.forwarding"] = "1"
		case Client:
			kv["net.ipv4.tcp_mtu_probing"] = "0"
			if l.cfg.ClearDF() {
				kv["net.ipv4.ip_no_pmtu_disc"] = "1"
			}
		}
		if err := l.sysctls(s, kv); err != nil {
			return err
		}
	}
	if err := ip("link", "add", "c0", "netns", ns(Client), "address", macC0, "type", "veth",
		"peer", "name", "r0", "netns", ns(Router), "address", macR0); err != nil {
		return err
	}
	if err := ip("link", "add", "r1", "netns", ns(Router), "address", macR1, "type", "veth",
		"peer", "name", "s0", "netns", ns(Server), "address", macS0); err != nil {
		return err
	}
	links := [][2]string{{ns(Client), "c0"}, {ns(Router), "r0"}, {ns(Router), "r1"}, {ns(Server), "s0"}}
	rc, rs := "r0", "r1" // the router's L3 interfaces
	if l.bridged() {
		rc, rs = "br0", "br1"
		mtu := strconv.Itoa(l.cfg.MTU)
		for _, b := range [][3]string{{"br0", "r0", macR0p}, {"br1", "r1", macR1p}} {
			br, port, portMAC := b[0], b[1], b[2]
			mac := macR0
			if br == "br1" {
				mac = macR1
			}
			steps := [][]string{
				{"link", "set", port, "address", portMAC},
				{"link", "add", br, "address", mac, "type", "bridge", "stp_state", "0", "mcast_snooping", "0"},
				{"link", "set", port, "master", br},
				// Set after enslaving: the user's MTU sticks, the
				// port keeps 1500 and accepts full-size frames.
				{"link", "set", br, "mtu", mtu},
			}
			for _, st := range steps {
				if err := ip(append([]string{"-n", ns(Router)}, st...)...); err != nil {
					return err
				}
			}
		}
		links = append(links, [2]string{ns(Router), "br0"}, [2]string{ns(Router), "br1"})
	}
	for _, lk := range links {
		// Offloads off: a packet in the lab must be a packet on a wire.
		if err := l.runNS(lk[0], "ethtool", "-K", lk[1], "tso", "off", "gso", "off", "gro", "off"); err != nil {
			return err
		}
	}
	addrs := []struct {
		ns, dev string
		a       netip.Addr
	}{
		{ns(Client), "c0", clientIPv4}, {ns(Client), "c0", clientIPv6},
		{ns(Router), rc, routerC4}, {ns(Router), rc, routerC6},
		{ns(Router), rs, routerS4}, {ns(Router), rs, routerS6},
		{ns(Server), "s0", serverIPv4}, {ns(Server), "s0", serverIPv6},
	}
	for _, a := range addrs {
		args := []string{"-n", a.ns, "addr", "add", a.a.String() + "/24", "dev", a.dev}
		if a.a.Is6() {
			args = []string{"-n", a.ns, "addr", "add", a.a.String() + "/64", "dev", a.dev, "nodad"}
		}
		if err := ip(args...); err != nil {
			return err
		}
	}
	for _, lk := range links {
		if err := ip("-n", lk[0], "link", "set", lk[1], "up"); err != nil {
			return err
		}
	}
	neigh := []struct {
		ns, dev string
		a       netip.Addr
		mac     string
	}{
		{ns(Client), "c0", routerC4, macR0}, {ns(Client), "c0", routerC6, macR0},
		{ns(Router), rc, clientIPv4, macC0}, {ns(Router), rc, clientIPv6, macC0},
		{ns(Router), rs, serverIPv4, macS0}, {ns(Router), rs, serverIPv6, macS0},
		{ns(Server), "s0", routerS4, macR1}, {ns(Server), "s0", routerS6, macR1},
	}
	for _, n := range neigh {
		if err := ip("-n", n.ns, "neigh", "replace", n.a.String(), "lladdr", n.mac, "dev", n.dev, "nud", "permanent"); err != nil {
			return err
		}
	}
	routes := [][]string{
		{"-n", ns(Client), "-4", "route", "add", "default", "via", routerC4.String(), "dev", "c0"},
		{"-n", ns(Client), "-6", "route", "add", "default", "via", routerC6.String(), "dev", "c0"},
		{"-n", ns(Server), "-4", "route", "add", "default", "via", routerS4.String(), "dev", "s0"},
		{"-n", ns(Server), "-6", "route", "add", "default", "via", routerS6.String(), "dev", "s0"},
	}
	if l.cfg.Scenario == FragmentsDropped {
		// The lower MTU only towards the server. With it on the way
		// back too, the server learns the path MTU from the router's
		// ICMP on its first large reply and then announces MSS N−40 in
		// its SYN-ACKs to that client for ten minutes, which heals the
		// client's direction of every later connection: the lab would
		// be broken only until its first large server flight.
		mtu := strconv.Itoa(l.cfg.MTU)
		routes = append(routes,
			[]string{"-n", ns(Router), "-4", "route", "replace", "198.18.1.0/24", "dev", rs, "proto", "kernel", "scope", "link", "src", routerS4.String(), "mtu", mtu},
			[]string{"-n", ns(Router), "-6", "route", "replace", "fd00:198:18:1::/64", "dev", rs, "proto", "kernel", "metric", "256", "mtu", mtu},
		)
	}
	for _, r := range routes {
		if err := ip(r...); err != nil {
			return err
		}
	}
	if rules := l.nftRules(); rules != nil {
		for s, text := range rules {
			cmd := l.Command(context.Background(), s, toolPath("nft"), "-f", "-")
			cmd.Stdin = strings.NewReader(text)
			if err := runCmd(cmd); err != nil {
				return fmt.Errorf("%w\nruleset:\n%s", err, text)
			}
		}
	}
	if l.cfg.Scenario == Squid {
		return l.startSquid()
	}
	return nil
}

// nftRules returns the nft ruleset per namespace for the scenario.
func (l *Lab) nftRules() map[Side]string {
	n := l.cfg.MTU
	switch l.cfg.Scenario {
	case Blackhole:
		return map[Side]string{Router: fmt.Sprintf(`table inet fitlab {
	chain forward {
		type filter hook forward priority 0; policy accept;
		%smeta length > %d counter drop comment "blackhole"
	}
}
`, l.iifname(), n)}
	case Reset:
		// reject runs in the forward hook: the router answers the
		// packet's sender with a reset from the packet's destination
		// address, as a firewall or IPS that refuses large segments
		// does. Only TCP can be reset; other protocols over N are
		// dropped.
		iif := l.iifname()
		return map[Side]string{Router: fmt.Sprintf(`table inet fitlab {
	chain forward {
		type filter hook forward priority 0; policy accept;
		%[1]smeta l4proto tcp meta length > %[2]d counter reject with tcp reset comment "reset"
		%[1]smeta length > %[2]d counter drop comment "reset: not tcp"
	}
}
`, iif, n)}
	case SplitIntolerant, SizeIntolerant:
		return map[Side]string{Router: l.middleboxRules()}
	case Squid:
		return map[Side]string{Router: l.squidRules()}
	case MTUICMPBlocked:
		return map[Side]string{Router: `table inet fitlab {
	chain output {
		type filter hook output priority 0; policy accept;
		icmp type destination-unreachable icmp code frag-needed counter drop comment "frag-needed"
		icmpv6 type packet-too-big counter drop comment "packet-too-big"
	}
}
`}
	case FragmentsDropped:
		// Before defragmentation (priority -400), so that fragments are
		// seen as fragments whatever else is loaded.
		return map[Side]string{Server: `table inet fitlab {
	chain prerouting {
		type filter hook prerouting priority -450; policy accept;
		ip frag-off & 0x3fff != 0 counter drop comment "ipv4 fragment"
		ip6 nexthdr 44 counter drop comment "ipv6 fragment"
	}
}
`}
	}
	return nil
}

// iifname is the nft match of the router's interface that the packets of
// the lab's Direction come in on ("" for Both).
func (l *Lab) iifname() string {
	switch l.cfg.Direction {
	case Upstream:
		return `iifname "r0" `
	case Downstream:
		return `iifname "r1" `
	}
	return ""
}

func (l *Lab) runNS(ns, name string, arg ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ipPath(), append([]string{"netns", "exec", ns, toolPath(name)}, arg...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return runCmd(cmd)
}

// counterRE reads a counted rule's packets and comment. Only rules that
// drop, reject or condemn packets carry counters and comments.
var counterRE = regexp.MustCompile(`counter packets (\d+) bytes \d+ [^"\n]*comment "([^"]+)"`)

// Drops returns how many packets each of the scenario's nft drop and
// reject rules has refused so far, by the rule's comment ("blackhole",
// "reset", "reset: not tcp", "frag-needed", "packet-too-big", "ipv4
// fragment", "ipv6 fragment"). The middleboxes count the first segments
// by which they condemned a flow ("split hello", forwarded; "large
// hello", dropped or reset), then the flow's later packets they reset
// ("split-intolerant: reset") or dropped ("split-intolerant: flow
// dropped", "size-intolerant: flow dropped"). Squid counts the
// connections it intercepted ("squid: intercepted": a flow's first
// packet, which the nat chain sees) and the packets its far side dropped
// ("squid: far blackhole"). Scenarios without rules return an empty map.
func (l *Lab) Drops() (map[string]int64, error) {
	m := map[string]int64{}
	for s := range l.nftRules() {
		out, err := l.Command(context.Background(), s, toolPath("nft"), "list", "table", "inet", "fitlab").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("lab: nft list: %w: %s", err, out)
		}
		for _, sm := range counterRE.FindAllStringSubmatch(string(out), -1) {
			v, _ := strconv.ParseInt(sm[1], 10, 64)
			m[sm[2]] += v
		}
	}
	return m, nil
}

// Close tears the lab down: it stops the processes it started, kills
// whatever still runs inside its own namespaces, and deletes them (the
// veths and bridges go with them). It is safe to call more than once and
// concurrently; later calls wait for the first and return its result.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.teardown() })
	return l.closeErr
}

func (l *Lab) teardown() error {
	l.mu.Lock()
	l.closed = true
	procs := make([]*Process, 0, len(l.procs))
	for p := range l.procs {
		procs = append(procs, p)
	}
	l.mu.Unlock()

	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { p.Stop() })
	}
	wg.Wait()

	var errs []error
	for _, s := range createdSides {
		l.mu.Lock()
		mine := l.created[s]
		l.mu.Unlock()
		if !mine {
			continue
		}
		name := l.Namespace(s)
		// Anything still inside our namespace was started by us (or by
		// a process we started): kill it, or the namespace outlives its
		// name.
		for range 50 {
			pids := nsPIDs(name)
			if len(pids) == 0 {
				break
			}
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := ip("netns", "del", name); err != nil {
			errs = append(errs, err)
			continue
		}
		l.mu.Lock()
		delete(l.created, s)
		l.mu.Unlock()
	}
	l.mu.Lock()
	atClose := l.atClose
	l.atClose = nil
	l.mu.Unlock()
	for _, f := range atClose {
		f()
	}
	liveMu.Lock()
	delete(live, l)
	liveMu.Unlock()
	if l.ownDir {
		os.RemoveAll(l.dir)
	}
	return errors.Join(errs...)
}

// nsPIDs lists the processes whose network namespace is the named one (as
// "ip netns pids" does), never the test binary itself.
func nsPIDs(name string) []int {
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/run/netns", name), &want); err != nil {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err != nil {
			continue
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	}
	return pids
}

// LiveNamespaces returns the namespaces of this test binary run (its
// prefix) that exist now, for tests of the teardown itself.
func LiveNamespaces() []string {
	return namespacesWithPrefix(runPrefix())
}

func namespacesWithPrefix(prefix string) []string {
	ents, err := os.ReadDir("/run/netns")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}
