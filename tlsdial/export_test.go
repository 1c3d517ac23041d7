package tlsdial

// GroupCount is the number of destinations with a dial running.
var GroupCount = groupCount
