package tlsdial

import (
	"time"

	"github.com/fitshake/fitshake/fingerprint"
	"github.com/fitshake/fitshake/pmtu"
)

// The ladder is the order in which a dial tries sizes after a stall:
//
//	hello rung 0 (full, post-quantum)     MTU: none → 1400 → 1280 → 576
//	                                        │ hello rejected          │
//	hello pq-compact (one segment)        MTU: none ◄───────────────┘
//	                                                                  │
//	hello classical (if allowed)          MTU: 1280 ◄─────────────────┘
//
// Clamping the MSS comes first: it fixes both directions (the server obeys
// the MSS the client advertises) and keeps the hello intact. 1400 fits the
// common tunnel/VPN overheads, 1280 is the IPv6 minimum link MTU that
// every IPv6 path must carry, 576 is the IPv4 minimum reassembly size.
// A smaller hello helps only when clamping alone did not, or when the
// evidence says the hello itself is refused (a split- or
// content-intolerant box, pmtu.Class.HelloRejected): then the dial jumps
// straight to the next smaller hello. The compact post-quantum rung runs
// without a clamp, so that it travels in one segment (a clamp would split
// it); the classical rung runs at 1280, a clamp that already fits almost
// every real path.
var (
	defaultMTUs = []int{0, 1400, 1280, 576}
	helloMTU    = 1280
)

// ladderMTUs returns the MTU steps and the MTU of the smaller-hello rungs
// this platform can use: without an MSS clamp (Windows) only the hellos
// can shrink.
func ladderMTUs() ([]int, int) {
	if !pmtu.CanClamp() {
		return []int{0}, 0
	}
	return defaultMTUs, helloMTU
}

// Stall windows. The kernel's minimum retransmission timeout is 200 ms, so
// a window below that cannot tell a lost segment from a slow one; a server
// answers a ClientHello in one round trip plus its own work, so four
// measured round trips leave room for slow servers on long paths. The cap
// keeps a mismeasured RTT (one that includes DNS) from hiding a stall.
const (
	minStallWindow = 250 * time.Millisecond
	maxStallWindow = 3 * time.Second
	stallRTTs      = 4
)

// MinStallWindow is the smallest stall window a dialer uses: a configured
// StallWindow below it, or below two connect round trips (no server can
// answer sooner), is raised to that. Below it, scheduling noise on a busy
// machine would race healthy handshakes for nothing.
const MinStallWindow = 50 * time.Millisecond

// stallWindow is how long a server may stay silent after the first flight.
// A positive configured value wins, raised to the floor; otherwise it
// derives from rtt.
func stallWindow(configured, rtt time.Duration) time.Duration {
	if configured > 0 {
		return max(configured, MinStallWindow, 2*rtt)
	}
	w := stallRTTs * rtt
	return min(max(w, minStallWindow), maxStallWindow)
}

// step is the setting of one attempt.
type step struct {
	mtu  int // path MTU the MSS is clamped to fit; 0 = no clamp
	rung int // index into the hello rungs
}

// ladderSteps builds the ladder for the hello rungs (at least 1): the
// first rung over mtus, then each further rung once, without a clamp if it
// is a one-segment rung, else at helloMTU.
func ladderSteps(mtus []int, helloMTU int, rungs []rungInfo) []step {
	var steps []step
	for _, m := range mtus {
		steps = append(steps, step{mtu: m})
	}
	for r := 1; r < len(rungs); r++ {
		mtu := helloMTU
		if rungs[r].oneSegment {
			mtu = 0
		}
		steps = append(steps, step{mtu: mtu, rung: r})
	}
	return steps
}

// stepIndex returns the index of the remembered entry e on steps, whose
// rungs are named by rungs; ok is false when e is not on this ladder. An
// unnamed rung (TCPDialer's, which replays the stack's own hello) and an
// entry without a rung match on the MTU alone.
func stepIndex(steps []step, rungs []rungInfo, e pmtu.Entry) (int, bool) {
	for i, s := range steps {
		name := rungs[s.rung].name
		if s.mtu == e.MTU && (name == "" || e.Rung == "" || name == e.Rung) {
			return i, true
		}
	}
	return 0, false
}

// Step is one setting a dial may try: the MSS clamp, as the path MTU it
// fits, and the ClientHello that goes with it.
type Step struct {
	// MTU is the path MTU the MSS is clamped to fit; 0 means no clamp.
	MTU int
	// Rung names the ClientHello's rung (fingerprint.NamePostQuantum,
	// fingerprint.NameCompact, fingerprint.NameClassical).
	Rung string
	// HelloSize is the ClientHello's TLS record size in bytes: exactly
	// what the dial writes first.
	HelloSize int
	// PostQuantum reports that the ClientHello carries the X25519MLKEM768
	// key share.
	PostQuantum bool
}

// Ladder returns the steps a dial to addr may try, in order, with the
// exact size of each ClientHello, without dialing: the MSS clamps this
// platform supports with the full hello, then the compact post-quantum
// hello without a clamp, then (with AllowClassical) the classical hello. It fails on what DialContext would fail on before
// dialing: an address without a host and no Config.ServerName, or a Config
// no hello can be built from.
func (d *Dialer) Ladder(addr string) ([]Step, error) {
	cfg, err := d.config(addr)
	if err != nil {
		return nil, err
	}
	opts := fingerprint.OptionsFrom(cfg, cfg.ServerName)
	rungs, infos, err := d.rungs(opts)
	if err != nil {
		return nil, err
	}
	if std, ok := rungs[0].StdConfig(cfg, opts); ok {
		// crypto/tls sends this one (see Dialer): measure its hello.
		hello, err := fingerprint.StdHello(std)
		if err != nil {
			return nil, err
		}
		if fingerprint.HasPostQuantumShare(hello) {
			infos[0].size = len(hello)
		}
	}
	mtus, hmtu := ladderMTUs()
	var out []Step
	for _, st := range ladderSteps(mtus, hmtu, infos) {
		r := infos[st.rung]
		out = append(out, Step{MTU: st.mtu, Rung: r.name, HelloSize: r.size, PostQuantum: r.pq})
	}
	return out, nil
}
