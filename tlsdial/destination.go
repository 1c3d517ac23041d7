package tlsdial

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"

	"github.com/fitshake/fitshake/pmtu"
)

// newDestination describes a dial to addr. A nil cache means
// pmtu.DefaultCache; a nil logger discards.
func newDestination(ctx context.Context, network, addr string, cache *pmtu.Cache, t *Trace, l *slog.Logger) destination {
	if cache == nil {
		cache = pmtu.DefaultCache
	}
	if l == nil {
		l = discard
	}
	recallable := cache.Len() > 0
	return destination{
		network:    network,
		addr:       addr,
		cache:      cache,
		key:        newDialKey(keyFor, network, addr, recallable),
		recallable: recallable,
		traces:     collectTraces(t, ctx),
		log:        l,
	}
}

// keyFor names the destination in the cache: its address, and the local
// network the dial leaves from (pmtu.LocalNetwork), so that what is
// learned on one network is not used on another. Tests replace it.
var keyFor = pmtu.KeyFor

// dialKey is a dial's cache key. Its Local costs a route lookup (20–300
// µs of netlink on Linux, the most in a fresh process) unless the route was
// looked up in the last two seconds. A dial needs the key before it
// connects only to recall what the cache remembers; when the cache is
// empty (a fresh process, or one whose dials never needed anything) there
// is nothing to recall, and the key is looked up only once the dial may
// learn something: beside its second attempt (engine.startLeg), so that a
// recovering dial finds it ready when it stores what it learned, and a
// healthy one never pays for it.
type dialKey struct {
	once          sync.Once
	ready         chan struct{} // closed once key is set
	key           pmtu.Key
	f             func(network, addr string) pmtu.Key // keyFor, as the dial began
	network, addr string
}

// newDialKey returns the key of a dial to addr over network, named by f:
// looked up at once if now, else when start or get first asks.
func newDialKey(f func(network, addr string) pmtu.Key, network, addr string, now bool) *dialKey {
	k := &dialKey{f: f, network: network, addr: addr}
	if now {
		k.once.Do(func() {
			k.key = f(network, addr)
			k.ready = readyNow
		})
	}
	return k
}

// start begins the lookup, in a goroutine of its own, unless it began.
func (k *dialKey) start() {
	k.once.Do(func() {
		k.ready = make(chan struct{})
		go func() {
			k.key = k.f(k.network, k.addr)
			close(k.ready)
		}()
	})
}

// get returns the key, waiting for its lookup.
func (k *dialKey) get() pmtu.Key {
	k.start()
	<-k.ready
	return k.key
}

// readyNow is a closed channel: the key of a dial that looked it up at once.
var readyNow = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// recall starts mc where the cache remembers the destination, if it does;
// else where its local network's prior says (pmtu.Cache.LoadNetwork).
func (d destination) recall(mc *machineConfig) {
	if !d.recallable {
		return
	}
	e, ok := d.cache.Load(d.key.get())
	if !ok {
		d.recallNetwork(mc)
		return
	}
	if i, ok := stepIndex(mc.steps, mc.rungs, e); ok {
		mc.first, mc.fromCache, mc.silence = i, true, e.Silence
		mc.borrowed = e.FromNetwork
	}
	if e.Class.HelloRejected() {
		mc.rejected = e.Class
		if e.Class == pmtu.ClassRefused && !mc.rungs[len(mc.rungs)-1].pq {
			// Every hello was refused, maybe by a dial that could not
			// send the classical one this dial may: skip the clamps,
			// try the hellos.
			mc.rejected = pmtu.ClassContentIntolerant
		}
	}
}

// recallNetwork starts mc clamped as the prior of the dial's local
// network says, if it has one. The clamp is the least reduced that the
// network's evidence supports; a dial that needs more walks down the
// ladder as usual, and what it learns is marked as resting on the
// network's evidence (machineConfig.borrowed), so that the prior never
// confirms itself. A prior is not raced against an unclamped attempt: on
// the networks it is made for, that attempt would be held by a silent box
// and cost every dial a grace (belief.go); a wrong prior ends with its
// evidence instead (pmtu's prior.go).
func (d destination) recallNetwork(mc *machineConfig) {
	p, ok := d.cache.LoadNetwork(d.key.get().Local)
	if !ok {
		return
	}
	if i, ok := stepIndex(mc.steps, mc.rungs, p); ok {
		mc.first, mc.fromNetwork, mc.borrowed = i, true, true
	}
}

// failed reports a dial that ended before any attempt, on bad input: a
// *DialError with an empty report, also given to the Done hook.
func (d destination) failed(err error) error {
	de := &DialError{Addr: d.addr, Err: err}
	d.traces.done(DoneInfo{Addr: d.addr, Err: de})
	return de
}

// netDialerOr returns nd, or the zero net.Dialer for nil.
func netDialerOr(nd *net.Dialer) *net.Dialer {
	if nd != nil {
		return nd
	}
	return new(net.Dialer)
}

// checkInput rejects what neither dialer can dial with: a network that is
// not TCP, a negative MaxAttempts.
func checkInput(network string, maxAttempts int) error {
	switch {
	case network != "tcp" && network != "tcp4" && network != "tcp6":
		return errors.New("tlsdial: unsupported network " + network + ": want tcp, tcp4 or tcp6")
	case maxAttempts < 0:
		return errMaxAttempts
	}
	return nil
}

var errMaxAttempts = errors.New("tlsdial: MaxAttempts is negative")

var discard = slog.New(slog.DiscardHandler)

// logs reports whether the logger takes records of level l: callers check
// it before building a record's attributes, which allocates.
func (d destination) logs(l slog.Level) bool { return d.log.Enabled(context.Background(), l) }
