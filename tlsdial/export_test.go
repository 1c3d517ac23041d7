package tlsdial

// GroupCount is the number of destinations with a dial running.
var GroupCount = groupCount

// MinHedgeAfter is the earliest, after its hello, that an attempt's
// silence races another.
const MinHedgeAfter = minHedgeAfter
