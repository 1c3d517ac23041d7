package tlsdial

// GroupCount is the number of destinations with a dial running.
var GroupCount = groupCount

// MinHedgeAfter is the earliest, after its hello, that an attempt's
// silence races another.
const MinHedgeAfter = minHedgeAfter

// PollReads is how many TCP_INFO reads the poller has made.
func PollReads() int64 { return polls.reads.Load() }
