package lab

import (
	"fmt"
	"strings"
)

// The middleboxes keep a verdict per flow in its conntrack mark.
const (
	markUndecided = 0x0 // no client data seen yet
	markPassed    = 0x1 // the first client data segment was let through
	markCondemned = 0x2 // refused: the rest of the flow is dropped or reset
	markReset     = 0x3 // SplitIntolerant, RejectReset: the reset was sent
)

// The router's client-side interface: the client's packets come in on it.
const clientIIF = `iifname "r0"`

// tlsHandshake matches a payload that starts a TLS handshake record:
// content type 22 (0x16), legacy version major 3. @ih is the transport
// payload: the kernel places it after the TCP header, options included
// (tcp doff).
const tlsHandshake = "@ih,0,16 0x1603"

// recordLen loads the record's length field (bytes 3–4 of the payload):
// the record is this plus its 5-byte header.
const recordLen = "@ih,24,16"

// middleboxRules returns the router's ruleset of a middlebox scenario: a
// forward chain that decides on each flow's first client data segment and
// remembers the verdict in the flow's conntrack mark.
//
//	mark 0 (undecided) --first client data--> 1 passed    (all later packets pass)
//	                                      \-> 2 condemned (later packets dropped/reset)
//
// Packets without payload (the TCP handshake, pure ACKs) fail the @ih
// loads, which ends the rule without a match, and pass undecided.
func (l *Lab) middleboxRules() string {
	var b strings.Builder
	b.WriteString("table inet fitlab {\n")
	if l.cfg.Scenario == SplitIntolerant {
		b.WriteString(splitSets())
	}
	b.WriteString("\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n")
	b.WriteString("\t\tmeta l4proto != tcp accept\n")
	fmt.Fprintf(&b, "\t\tct mark %#x accept\n", markPassed)
	for _, r := range l.condemnedRules() {
		b.WriteString("\t\t" + r + "\n")
	}
	for _, r := range l.inspectRules() {
		fmt.Fprintf(&b, "\t\t%s ct mark %#x %s\n", clientIIF, markUndecided, r)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// condemnedRules handle the packets of a flow already condemned.
func (l *Lab) condemnedRules() []string {
	name := string(l.cfg.Scenario)
	drop := fmt.Sprintf(`ct mark { %#x, %#x } counter drop comment "%s: flow dropped"`, markCondemned, markReset, name)
	if l.cfg.Scenario == SplitIntolerant && l.cfg.Reject == RejectReset {
		// The first segment went through; the client's next packet
		// (the hello's tail) gets the reset, once.
		reset := fmt.Sprintf(`%s ct mark %#x ct mark set %#x counter reject with tcp reset comment "%s: reset"`,
			clientIIF, markCondemned, markReset, name)
		return []string{reset, drop}
	}
	return []string{drop}
}

// inspectRules decide on a flow's first client data segment; each is
// prefixed with the client interface and "ct mark 0".
func (l *Lab) inspectRules() []string {
	var rules []string
	condemn := fmt.Sprintf("ct mark set %#x counter", markCondemned)
	switch l.cfg.Scenario {
	case SplitIntolerant:
		// The first segment is forwarded; what follows is refused.
		rules = append(rules,
			fmt.Sprintf(`%s ip hdrlength 5 tcp doff . ip length . %s @split4 %s accept comment "split hello"`, tlsHandshake, recordLen, condemn),
			fmt.Sprintf(`%s ip6 nexthdr tcp tcp doff . ip6 length . %s @split6 %s accept comment "split hello"`, tlsHandshake, recordLen, condemn))
	case SizeIntolerant:
		verdict := "drop"
		if l.cfg.Reject == RejectReset {
			verdict = "reject with tcp reset"
		}
		rules = append(rules, fmt.Sprintf(`%s %s > %d %s %s comment "large hello"`,
			tlsHandshake, recordLen, l.cfg.HelloLimit-5, condemn, verdict))
	}
	// Any other first data segment (one byte loads only if there is
	// payload; "& 0 == 0" is then always true) passes the flow.
	return append(rules, fmt.Sprintf("@ih,0,8 & 0x0 == 0x0 ct mark set %#x", markPassed))
}

// splitSets returns the sets that tell "the TLS record is longer than the
// segment that starts it". nft cannot compare two packet fields, so the
// comparison is tabulated: for each TCP header length (tcp doff, in 32-bit
// words, 5..15) and each IP length the lab's links can carry, one element
// holds the record lengths (@ih,24,16) that do not fit the segment's
// payload. With a payload of P bytes, the record (5-byte header plus
// length R) is longer when R + 5 > P, that is R ≥ P − 4, where P is
// ip length − 20 − 4·doff on IPv4 (a 20-byte IP header: the rule also
// requires ip hdrlength 5) and ip6 length − 4·doff on IPv6 (ip6 length
// counts the payload after the fixed header; the rule requires TCP as the
// next header, no extension headers). A segment of under 5 bytes of
// payload cannot show a record length and is not caught. About 15,800
// elements a family, in nft's concatenated-ranges (pipapo) sets.
func splitSets() string {
	var b strings.Builder
	for _, f := range Families() {
		// hdr: IP header bytes that the length field counts; top: the
		// largest length field on the lab's 1500-byte links.
		name, field, hdr, top := "split4", "ip length", 20, MaxMTU
		if f == IPv6 {
			name, field, hdr, top = "split6", "ip6 length", 0, MaxMTU-40
		}
		fmt.Fprintf(&b, "\tset %s {\n\t\ttypeof tcp doff . %s . %s\n\t\tflags interval\n\t\telements = {", name, field, recordLen)
		sep := " "
		for doff := 5; doff <= 15; doff++ {
			for n := hdr + 4*doff + 5; n <= top; n++ {
				payload := n - hdr - 4*doff
				fmt.Fprintf(&b, "%s%d . %d . %d-65535", sep, doff, n, payload-4)
				sep = ", "
			}
		}
		b.WriteString(" }\n\t}\n")
	}
	return b.String()
}
