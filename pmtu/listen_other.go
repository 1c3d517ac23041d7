//go:build !linux

package pmtu

// listenClampSupported is false outside Linux: whether accepted connections
// inherit a listener's TCP_MAXSEG there has not been measured.
const listenClampSupported = false
