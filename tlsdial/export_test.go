package tlsdial

import "github.com/fitshake/fitshake/pmtu"

// GroupCount is the number of destinations with a dial running.
var GroupCount = groupCount

// MinHedgeAfter is the earliest, after its hello, that an attempt's
// silence races another.
const MinHedgeAfter = minHedgeAfter

// PollReads is how many TCP_INFO reads the poller has made.
func PollReads() int64 { return polls.reads.Load() }

// PreciseLooks is how many first looks were set precisely (poll.go).
func PreciseLooks() int64 { return polls.precise.Load() }

// FirstLookRTTs and MinFirstLook set when an early first look comes
// (looks.go).
const (
	FirstLookRTTs = firstLookRTTs
	MinFirstLook  = minFirstLook
)

// SetKeyFor makes dials name their destination in the cache with f until
// the returned function restores pmtu.KeyFor.
func SetKeyFor(f func(network, addr string) pmtu.Key) (restore func()) {
	old := keyFor
	keyFor = f
	return func() { keyFor = old }
}

// Answered reports whether the process saw the destination answer its
// last dial's first attempt (looks.go).
func Answered(network, addr string) bool {
	return answered.has(answeredKey{network, addr})
}
