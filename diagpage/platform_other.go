//go:build !linux

package diagpage

// Elsewhere there is no TCP_INFO: sizes from the request's length, losses
// from the browser's timeouts (see the package documentation).
var platform = capabilities{tcpInfo: false}
