package steer

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"
)

// MaxPrefixes is the most prefixes [Group.SetClamped] steers at once, once
// covered prefixes are dropped. It keeps the program within the kernel's
// limit of cBPF instructions (maxInstructions) in the worst case: ten
// instructions for an IPv6 prefix of 97 to 127 bits.
const MaxPrefixes = 400

// maxInstructions is BPF_MAXINSNS, the kernel's limit for a cBPF program.
const maxInstructions = 4096

// skfNetOff is SKF_NET_OFF (-0x100000): a load at skfNetOff+k reads byte k
// of the packet's network header. A reuseport program's packet data starts
// after the TCP header, so absolute offsets cannot reach the addresses.
const skfNetOff = 0xfff00000

// The twins' indices in the reuseport group, in the order they listen:
// the unclamped one, then the clamped ones (the first at clampedIndex).
const (
	unclampedIndex = 0
	clampedIndex   = 1
)

// Where the source address lies in each family's fixed header.
const (
	srcOff4 = 12
	srcOff6 = 8
)

// TooManyPrefixesError is returned by [Group.SetClamped] for more than
// [MaxPrefixes] prefixes, counted once covered ones are dropped. The
// previous program stays in place.
type TooManyPrefixesError struct {
	Given int // how many prefixes SetClamped was given
}

func (e *TooManyPrefixesError) Error() string {
	return fmt.Sprintf("steer: %d prefixes to clamp leave more than %d once covered ones are dropped: aggregate them", e.Given, MaxPrefixes)
}

// PrefixError reports a prefix that is not valid.
type PrefixError struct {
	Prefix netip.Prefix
}

func (e *PrefixError) Error() string {
	return fmt.Sprintf("steer: invalid prefix %v", e.Prefix)
}

// canon returns p masked, an IPv4-mapped one as IPv4.
func canon(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// normalize returns prefixes masked, IPv4-mapped ones as IPv4, IPv4 first
// and shortest first, without those another covers; or an error.
func normalize(prefixes []netip.Prefix) ([]netip.Prefix, error) {
	ps := make([]netip.Prefix, 0, len(prefixes))
	for _, p := range prefixes {
		if !p.IsValid() {
			return nil, &PrefixError{Prefix: p}
		}
		ps = append(ps, canon(p))
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		return cmp.Or(
			cmp.Compare(a.Addr().BitLen(), b.Addr().BitLen()),
			cmp.Compare(a.Bits(), b.Bits()),
			a.Addr().Compare(b.Addr()))
	})
	var kept []netip.Prefix
	for _, p := range ps {
		if slices.ContainsFunc(kept, func(q netip.Prefix) bool { return q.Overlaps(p) }) {
			continue // q is no longer than p: it covers p
		}
		if kept = append(kept, p); len(kept) > MaxPrefixes {
			return nil, &TooManyPrefixesError{Given: len(prefixes)}
		}
	}
	return kept, nil
}

// program returns the cBPF program that steers SYNs from the normalized
// prefixes to the clamped twin and every other SYN to the unclamped one.
// base is where the network header starts: skfNetOff in the kernel, 0
// for a test that runs the program on bare IP packets.
//
//	ldb [base]; rsh #4            version nibble
//	jeq #4 ? next : skip the ja
//	ja  past the IPv4 block
//	IPv4 block: per prefix, ld word, and mask, jeq (else next prefix), ret #1; then ret #0
//	jeq #6, ja, IPv6 block as for IPv4
//	ret #0                       neither family
//
// Far jumps are ja (32 bits); conditional jumps skip at most one prefix
// (8 bits).
func program(prefixes []netip.Prefix, base uint32) []bpf.Instruction {
	return programTo(prefixes, nil, base)
}

// programTo is program with a twin for each prefix: SYNs from prefixes[i]
// go to twin index[i] (the first clamped twin for all when index is nil).
func programTo(prefixes []netip.Prefix, index []uint32, base uint32) []bpf.Instruction {
	if len(prefixes) == 0 {
		return []bpf.Instruction{bpf.RetConstant{Val: unclampedIndex}}
	}
	var v4, v6 []bpf.Instruction
	for i, p := range prefixes {
		to := uint32(clampedIndex)
		if index != nil {
			to = index[i]
		}
		if p.Addr().Is4() {
			v4 = append(v4, match(p, base+srcOff4, to)...)
		} else {
			v6 = append(v6, match(p, base+srcOff6, to)...)
		}
	}
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: base, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4},
	}
	for _, fam := range []struct {
		version uint32
		block   []bpf.Instruction
	}{{4, v4}, {6, v6}} {
		block := append(fam.block, bpf.RetConstant{Val: unclampedIndex})
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: fam.version, SkipTrue: 1},
			bpf.Jump{Skip: uint32(len(block))})
		prog = append(prog, block...)
	}
	return append(prog, bpf.RetConstant{Val: unclampedIndex})
}

// match returns the instructions that return the twin index to for a
// source address in p, read from off, and otherwise fall through to the
// instruction after them.
func match(p netip.Prefix, off, to uint32) []bpf.Instruction {
	addr, bits := p.Addr().AsSlice(), p.Bits()
	var ins []bpf.Instruction
	var jeqs []int
	for w := 0; 32*w < bits; w++ {
		ins = append(ins, bpf.LoadAbsolute{Off: off + uint32(4*w), Size: 4})
		val := binary.BigEndian.Uint32(addr[4*w:])
		if rest := bits - 32*w; rest < 32 {
			mask := ^uint32(0) << (32 - rest)
			ins = append(ins, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mask})
			val &= mask
		}
		jeqs = append(jeqs, len(ins))
		ins = append(ins, bpf.JumpIf{Cond: bpf.JumpEqual, Val: val})
	}
	ins = append(ins, bpf.RetConstant{Val: to})
	for _, j := range jeqs {
		jeq := ins[j].(bpf.JumpIf)
		jeq.SkipFalse = uint8(len(ins) - 1 - j) // past this prefix's ret
		ins[j] = jeq
	}
	return ins
}
