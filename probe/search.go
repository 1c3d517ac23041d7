package probe

import (
	"context"
)

// Sizes the searches work between. Below minPacket (the IPv4 minimum
// every path must carry) a path is beyond measuring; resolution is how
// close the bisection gets.
const (
	minPacket  = 576
	resolution = 8
	// smallChunk is the piece the downstream probes write their hello in:
	// 256 bytes and IPv6 headers with timestamps make 328-byte packets,
	// which any path carries, whatever upstream limit it has.
	smallChunk = 256
)

// limit is what the search found in one direction.
type limit struct {
	mtu     int  // the largest IP packet seen to get through; 0: none (below minPacket)
	full    int  // the largest packet this connection could carry without a clamp
	atLeast bool // mtu is a lower bound: nothing larger could be shown
	icmp    bool // the sender learned a smaller path MTU from ICMP
	broken  bool // unclamped packets vanished (no ICMP)
	reset   bool // unclamped attempts were reset rather than dropped
}

// searchUp finds the largest packet that reaches the server: the full
// hello unclamped first (one connection on a healthy path), then a
// bisection of MSS clamps.
func (r *run) searchUp(ctx context.Context) (limit, error) {
	s := spec{dir: up, hello: r.hellos.full, wait: r.waitUp()}
	o, err := r.probe(ctx, "upstream, no clamp", s)
	if err != nil {
		return limit{}, err
	}
	l := limit{full: o.allowed}
	switch {
	case o.outcome == passed:
		l.mtu = o.packet
		return l, nil
	case o.pmtuShrank:
		l.mtu, l.icmp = o.pmtu, true
		return l, nil
	}
	l.broken, l.reset = true, o.outcome == refused
	return r.bisect(ctx, s, l, o.packet)
}

// droppedFragments tells, for an IPv4 system that clears DF, whether the
// upstream loss was fragmentation: the unclamped probe again with DF set
// gets ICMP. It runs last: with net.ipv4.ip_no_pmtu_disc=1 that ICMP sets
// the kernel's path MTU to the 552-byte minimum for ten minutes.
func (r *run) droppedFragments(ctx context.Context, l limit) (bool, error) {
	if !l.broken || !r.ipv4 || !clearsDF() {
		return false, nil
	}
	s := spec{dir: up, hello: r.hellos.full, wait: r.waitUp(), forceDF: true}
	o, err := r.probe(ctx, "upstream, no clamp, DF set", s)
	return err == nil && (o.pmtuShrank || o.outcome == passed), err
}

// searchDown finds the largest packet that comes back from the server: a
// small hello unclamped, then a bisection of the MSS the server is told.
func (r *run) searchDown(ctx context.Context) (limit, error) {
	s := spec{dir: down, hello: r.hellos.small, wait: r.waitDown(), chunk: smallChunk}
	o, err := r.probe(ctx, "downstream, no clamp", s)
	if err != nil {
		return limit{}, err
	}
	l := limit{full: o.allowed}
	if o.outcome == passed {
		r.noteFlight(o)
		l.mtu = o.packet
		// A flight of one segment shows no limit, and neither does one
		// capped by the MSS this host announced below its link's MTU (a
		// path MTU the kernel learned earlier lowers it).
		l.atLeast = o.received <= o.packet || (o.ifMTU > 0 && o.allowed < o.ifMTU && o.packet >= o.allowed-resolution)
		l.icmp = !l.atLeast && o.packet < l.full-resolution
		return l, nil
	}
	l.broken, l.reset = true, o.outcome == refused
	return r.bisect(ctx, s, l, l.full)
}

// bisect narrows l between minPacket and hi, which did not get through,
// probing with s at clamped sizes.
func (r *run) bisect(ctx context.Context, s spec, l limit, hi int) (limit, error) {
	s.packet = minPacket
	o, err := r.probe(ctx, s.dir.name()+", clamp "+itoa(minPacket), s)
	if err != nil || o.outcome != passed {
		return l, err // below minPacket: l.mtu stays 0
	}
	lo := o.packet
	l.atLeast = s.dir == down && o.received <= o.packet
	for hi-lo > resolution && r.budget() {
		s.packet = (lo + hi) / 2
		o, err := r.probe(ctx, s.dir.name()+", clamp "+itoa(s.packet), s)
		if err != nil {
			return l, err
		}
		if o.outcome != passed {
			hi = s.packet
			continue
		}
		r.noteFlight(o)
		if o.packet < s.packet-resolution {
			// The server's flight or MSS is smaller than the clamp:
			// nothing larger can be shown.
			l.atLeast = true
			lo = max(lo, o.packet)
			break
		}
		lo = o.packet
	}
	if hi-lo > resolution && !r.budget() {
		r.unmeasured("the rest of the search: MaxConns reached")
	}
	l.mtu = lo
	return l, nil
}

func (d dir) name() string {
	if d == up {
		return "upstream"
	}
	return "downstream"
}
