package tlsdial

import "github.com/fitshake/fitshake/pmtu"

// rejection classifies attempt l, reset or closed before any reply, from
// ev (its last TCP_INFO).
//
// A hello acknowledged whole was read and refused, not its packets: for
// its size or content (content-intolerant), or — once a different hello
// was refused the same way, and no other is left to try or still running —
// every hello the dial may send (refused: a policy, or a server that does
// not speak TLS there). A hello
// that spanned several segments and was cut after its head was
// acknowledged met a split-intolerant box. One reset in segments any path
// carries (at the ladder's smallest clamp, or after a reset there) is
// content-intolerant. A destination learned to refuse hellos refuses this
// one too. Otherwise a clamp may still help: ClassReset.
func (m *machine) rejection(l *mleg, ev pmtu.Evidence) pmtu.Class {
	switch {
	case readWhole(ev) && (m.cfg.rejected == pmtu.ClassRefused || (m.refusedOther(l) && !m.smallerLeft(l) && m.live() == 1)):
		return pmtu.ClassRefused
	case readWhole(ev):
		return pmtu.ClassContentIntolerant
	case ev.TCPInfo && ev.Segments() > 1 && ev.Acked > 0:
		return pmtu.ClassSplitIntolerant
	case m.cfg.rejected.HelloRejected():
		return m.cfg.rejected
	case m.resetInSmallPackets(l):
		return pmtu.ClassContentIntolerant
	}
	return pmtu.ClassReset
}

// readWhole reports whether TCP_INFO showed the whole hello acknowledged.
func readWhole(ev pmtu.Evidence) bool { return ev.TCPInfo && ev.Sent > 0 && ev.Acked >= ev.Sent }

// refusedOther reports whether an attempt with another hello than l's was
// read whole and refused.
func (m *machine) refusedOther(l *mleg) bool {
	for _, o := range m.legs {
		d := m.attempt(o.id).Diagnosis
		if o.ended && m.cfg.steps[o.idx].rung != m.cfg.steps[l.idx].rung && d.Class.HelloRejected() && readWhole(d.Evidence) {
			return true
		}
	}
	return false
}

// smallerLeft reports whether a smaller hello than l's is on the ladder
// and not yet begun.
func (m *machine) smallerLeft(l *mleg) bool {
	for i := l.idx + 1; i < len(m.cfg.steps); i++ {
		if m.cfg.steps[i].rung > m.cfg.steps[l.idx].rung && !m.begun(i) {
			return true
		}
	}
	return false
}

// proxyVerdict explains a dial that gave up when every hello it sent was
// acknowledged whole and none answered, one of them at the ladder's
// smallest clamp: not a reply lost for its size, a box acknowledging for
// the server (pmtu.ClassProxy). It returns the diagnosis and the attempt
// at the smallest clamp.
func (m *machine) proxyVerdict() (pmtu.Diagnosis, *mleg, bool) {
	least := m.smallestMTU()
	var at *mleg
	for _, l := range m.legs {
		if l.mon == nil {
			continue // never sent: it says nothing
		}
		a := m.attempt(l.id)
		ev := a.Diagnosis.Evidence
		if a.Outcome != OutcomeStall || !readWhole(ev) || ev.Received > 0 || ev.OutOfOrder > 0 {
			return pmtu.Diagnosis{}, nil, false
		}
		if least > 0 && m.cfg.steps[l.idx].mtu == least {
			at = l
		}
	}
	if at == nil {
		return pmtu.Diagnosis{}, nil, false
	}
	d := m.attempt(at.id).Diagnosis
	d.Class = pmtu.ClassProxy
	return d, at, true
}

// resetInSmallPackets reports whether l, being reset, or an attempt before
// it was reset at the ladder's smallest clamp: in packets any path carries.
func (m *machine) resetInSmallPackets(l *mleg) bool {
	least := m.smallestMTU()
	if least == 0 {
		return false
	}
	for _, o := range m.legs {
		reset := o == l || (o.ended && m.attempt(o.id).Outcome == OutcomeReset)
		if reset && m.cfg.steps[o.idx].mtu == least {
			return true
		}
	}
	return false
}

// helloError wraps err, how attempt a ended after its hello was refused
// as d says, with the change on the client's side that gets through.
func (m *machine) helloError(a *Attempt, d pmtu.Diagnosis, err error) *HelloError {
	return &HelloError{Addr: m.cfg.addr, ID: a.ID, HelloSize: a.HelloSize, Diagnosis: d, Fix: m.clientFix(d.Class), Err: err}
}

// strongerRefusal reports whether c explains the dial better than the
// report's diagnosis: a refused hello over a stall or reset, a refusal of
// every hello over that of one.
func (m *machine) strongerRefusal(c pmtu.Class) bool {
	cur := m.report.Diagnosis.Class
	return (c.HelloRejected() && !cur.HelloRejected()) || (c == pmtu.ClassRefused && cur != pmtu.ClassRefused)
}

// mlkemShare is the size of an X25519MLKEM768 key share: a hello smaller
// than it carries none, and dropping post-quantum cannot shrink it.
const mlkemShare = 1216

// clientFix names the client-side change that may get past a box that
// refused the hello as c says, given what this dial may still try: none
// where a smaller hello cannot help (every hello refused, or one already
// without a post-quantum share).
func (m *machine) clientFix(c pmtu.Class) string {
	r := m.cfg.rungs
	switch {
	case !c.SmallerHelloHelps():
		return ""
	case r[0].name == "" && r[0].size > 0 && r[0].size < mlkemShare:
		return ""
	case r[0].name == "":
		return "TCPDialer cannot change crypto/tls's ClientHello: use tlsdial.Dialer, whose compact post-quantum hello fits one segment and carries no ML-DSA signature algorithms (Go 1.27's crypto/tls cannot leave them out); or give crypto/tls a smaller hello for this destination: tls.Config.CurvePreferences without X25519MLKEM768 (in Go 1.27 it overrides GODEBUG), or GODEBUG=tlsmlkem=0 (both drop post-quantum)"
	case r[len(r)-1].pq:
		return "set Dialer.AllowClassical to let a classical ClientHello (no post-quantum key share, about 250 bytes) through"
	}
	return ""
}

// smallestMTU returns the smallest clamp on the ladder, 0 if none.
func (m *machine) smallestMTU() int {
	least := 0
	for _, st := range m.cfg.steps {
		if st.mtu > 0 && (least == 0 || st.mtu < least) {
			least = st.mtu
		}
	}
	return least
}
