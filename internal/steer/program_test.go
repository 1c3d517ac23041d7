package steer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/bpf"
)

// packet returns a bare IP header (then a TCP header's worth of zeros) from
// src, as the program sees it at base 0.
func packet(src netip.Addr) []byte {
	if src.Is4() {
		p := make([]byte, 40)
		p[0] = 0x45
		a := src.As4()
		copy(p[srcOff4:], a[:])
		copy(p[16:], []byte{198, 18, 1, 2})
		return p
	}
	p := make([]byte, 60)
	p[0] = 0x60
	a := src.As16()
	copy(p[srcOff6:], a[:])
	p[39] = 2
	return p
}

// run assembles the program for prefixes (normalized first), as SetClamped
// would, and returns a function that runs it on a packet from src.
func run(t *testing.T, prefixes ...string) func(src string) int {
	t.Helper()
	ps := make([]netip.Prefix, len(prefixes))
	for i, s := range prefixes {
		ps[i] = netip.MustParsePrefix(s)
	}
	norm, err := normalize(ps)
	require.NoError(t, err)
	return runNorm(t, norm)
}

func runNorm(t *testing.T, ps []netip.Prefix) func(src string) int {
	t.Helper()
	prog := program(ps, 0)
	_, err := assemble(prog)
	require.NoError(t, err)
	vm, err := bpf.NewVM(prog)
	require.NoError(t, err)
	return func(src string) int {
		t.Helper()
		out, err := vm.Run(packet(netip.MustParseAddr(src)))
		require.NoError(t, err)
		return out
	}
}

func TestProgram(t *testing.T) {
	tests := []struct {
		name     string
		prefixes []string
		in, out  []string // sources steered to the clamped twin, and not
	}{
		{"none", nil, nil, []string{"198.18.0.2", "fd00:198:18::2", "0.0.0.0", "::"}},
		{"v4 /24 and its edges", []string{"198.18.0.0/24"},
			[]string{"198.18.0.0", "198.18.0.2", "198.18.0.255"},
			[]string{"198.17.255.255", "198.18.1.0", "fd00:198:18::2", "::c612:2"}},
		{"v4 /32", []string{"198.18.0.3/32"}, []string{"198.18.0.3"}, []string{"198.18.0.2", "198.18.0.4"}},
		{"v4 /31", []string{"198.18.0.2/31"}, []string{"198.18.0.2", "198.18.0.3"}, []string{"198.18.0.1", "198.18.0.4"}},
		{"v4 /17", []string{"10.1.128.0/17"}, []string{"10.1.128.0", "10.1.255.255"}, []string{"10.1.127.255", "10.2.0.0"}},
		{"v4 /1", []string{"128.0.0.0/1"}, []string{"128.0.0.0", "255.255.255.255"}, []string{"127.255.255.255", "::8000:0"}},
		{"v4 /0: every IPv4 source, no IPv6", []string{"0.0.0.0/0"}, []string{"0.0.0.0", "203.0.113.9"}, []string{"::", "fd00::1"}},
		{"unmasked", []string{"198.18.0.77/24"}, []string{"198.18.0.1"}, []string{"198.18.1.1"}},
		{"v4-mapped v6 prefix is v4", []string{"::ffff:198.18.0.0/120"}, []string{"198.18.0.9"}, []string{"::ffff:198.18.0.9", "198.18.1.9"}},
		{"v6 /48 and its edges", []string{"fd00:198:18::/48"},
			[]string{"fd00:198:18::", "fd00:198:18::2", "fd00:198:18:ffff:ffff:ffff:ffff:ffff"},
			[]string{"fd00:198:17:ffff:ffff:ffff:ffff:ffff", "fd00:198:19::", "198.18.0.2"}},
		{"v6 /64", []string{"2001:db8:1:2::/64"}, []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff::"}, []string{"2001:db8:1:3::", "2001:db8:1:1:ffff::"}},
		{"v6 /33", []string{"2001:db8:8000::/33"}, []string{"2001:db8:8000::", "2001:db8:ffff::1"}, []string{"2001:db8:7fff::1", "2001:db9::"}},
		{"v6 /96", []string{"2001:db8::1:0:0/96"}, []string{"2001:db8::1:0:0", "2001:db8::1:ffff:ffff"}, []string{"2001:db8::2:0:0", "2001:db8::0:ffff:ffff"}},
		{"v6 /127", []string{"fd00::2/127"}, []string{"fd00::2", "fd00::3"}, []string{"fd00::1", "fd00::4"}},
		{"v6 /128", []string{"fd00:198:18::3/128"}, []string{"fd00:198:18::3"}, []string{"fd00:198:18::2", "fd00:198:18::4", "198.18.0.3"}},
		{"v6 /0", []string{"::/0"}, []string{"::", "fd00::1"}, []string{"0.0.0.0", "198.18.0.2"}},
		{"both families", []string{"198.18.0.3/32", "fd00:198:18::3/128"}, []string{"198.18.0.3", "fd00:198:18::3"}, []string{"198.18.0.2", "fd00:198:18::2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steer := run(t, tt.prefixes...)
			for _, src := range tt.in {
				assert.Equal(t, clampedIndex, steer(src), "%s should be clamped", src)
			}
			for _, src := range tt.out {
				assert.Equal(t, unclampedIndex, steer(src), "%s should not be clamped", src)
			}
		})
	}
}

// Packets that are neither IPv4 nor IPv6, or too short to hold a source
// address, go to the unclamped twin.
func TestProgramOddPackets(t *testing.T) {
	var all []netip.Prefix // every address, but each read from the packet (a /0 reads nothing)
	for _, s := range []string{"0.0.0.0/1", "128.0.0.0/1", "::/1", "8000::/1"} {
		all = append(all, netip.MustParsePrefix(s))
	}
	prog := program(all, 0)
	vm, err := bpf.NewVM(prog)
	require.NoError(t, err)
	for _, p := range [][]byte{
		{},
		{0x45},
		{0x60, 0, 0, 0, 0, 0, 0, 0, 1},
		append([]byte{0x50}, make([]byte, 59)...),
		make([]byte, 60),
	} {
		out, err := vm.Run(p)
		require.NoError(t, err)
		assert.Equal(t, unclampedIndex, out, "% x", p)
	}
	out, err := vm.Run(packet(netip.MustParseAddr("192.0.2.1")))
	require.NoError(t, err)
	assert.Equal(t, clampedIndex, out, "the same program clamps a real packet")
}

// randomPrefix returns a random prefix of either family, of a length that
// exercises partial words.
func randomPrefix(r *rand.Rand) netip.Prefix {
	if r.IntN(2) == 0 {
		var a [4]byte
		for i := range a {
			a[i] = byte(r.IntN(4)) // a small space, so that prefixes nest and sources hit
		}
		return netip.PrefixFrom(netip.AddrFrom4(a), r.IntN(33)).Masked()
	}
	var a [16]byte
	for i := range a {
		a[i] = byte(r.IntN(4))
	}
	return netip.PrefixFrom(netip.AddrFrom16(a), r.IntN(129)).Masked()
}

// With many prefixes, the program agrees with netip's Contains on random
// sources and on every prefix's first and last address and their
// neighbours.
func TestProgramOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		var ps []netip.Prefix
		for range 1 + r.IntN(300) {
			if p := randomPrefix(r); p.Bits() > 4 { // keep /0../4 rare: they cover everything
				ps = append(ps, p)
			}
		}
		norm, err := normalize(ps)
		require.NoError(t, err)
		steer := runNorm(t, norm)
		var srcs []netip.Addr
		for _, p := range ps {
			first, last := p.Addr(), lastAddr(p)
			srcs = append(srcs, first, last, first.Prev(), last.Next())
		}
		for range 500 {
			srcs = append(srcs, randomPrefix(r).Addr())
		}
		for _, src := range srcs {
			if !src.IsValid() {
				continue
			}
			want := unclampedIndex
			if slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(src) }) {
				want = clampedIndex
			}
			require.Equal(t, want, steer(src.String()), "round %d: %s against %d prefixes", round, src, len(ps))
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// MaxPrefixes of the longest kind fit the kernel's limit; one more is
// refused; covered prefixes do not count.
func TestProgramSize(t *testing.T) {
	worst := make([]netip.Prefix, MaxPrefixes)
	for i := range worst {
		a := netip.MustParseAddr(fmt.Sprintf("2001:db8::%x:0", i)).As16()
		worst[i] = netip.PrefixFrom(netip.AddrFrom16(a), 127) // 3 full words and a partial one
	}
	norm, err := normalize(worst)
	require.NoError(t, err)
	require.Len(t, norm, MaxPrefixes)
	raw, err := assemble(program(norm, skfNetOff))
	require.NoError(t, err)
	assert.LessOrEqual(t, len(raw), maxInstructions)
	assert.Greater(t, len(raw), maxInstructions*9/10, "MaxPrefixes leaves little of the limit unused")
	t.Logf("%d prefixes /127: %d instructions", MaxPrefixes, len(raw))

	steer := runNorm(t, norm)
	assert.Equal(t, clampedIndex, steer(fmt.Sprintf("2001:db8::%x:1", MaxPrefixes-1)), "the last prefix is reached")
	assert.Equal(t, unclampedIndex, steer(fmt.Sprintf("2001:db8::%x:0", MaxPrefixes)))

	_, err = normalize(append(worst, netip.MustParsePrefix("198.18.0.0/24")))
	var tooMany *TooManyPrefixesError
	require.ErrorAs(t, err, &tooMany)
	assert.Equal(t, MaxPrefixes+1, tooMany.Given)

	covered := append(slices.Clone(worst), netip.MustParsePrefix("2001:db8::5:0/128"), netip.MustParsePrefix("2001:db8::7:1/128"))
	norm, err = normalize(covered)
	require.NoError(t, err, "prefixes inside others are dropped before counting")
	assert.Len(t, norm, MaxPrefixes)
}

func TestNormalize(t *testing.T) {
	norm, err := normalize([]netip.Prefix{
		netip.MustParsePrefix("fd00:198:18::5/128"),
		netip.MustParsePrefix("198.18.0.77/24"),
		netip.MustParsePrefix("fd00:198:18::/48"),
		netip.MustParsePrefix("198.18.0.0/16"),
		netip.MustParsePrefix("::ffff:203.0.113.0/120"),
		netip.MustParsePrefix("198.18.0.0/16"),
	})
	require.NoError(t, err)
	assert.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("198.18.0.0/16"),
		netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("fd00:198:18::/48"),
	}, norm)

	_, err = normalize([]netip.Prefix{{}})
	var bad *PrefixError
	assert.ErrorAs(t, err, &bad)
	assert.False(t, errors.Is(err, ErrUnsupported))
}
