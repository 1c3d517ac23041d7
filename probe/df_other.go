//go:build !linux

package probe

import "syscall"

// measures reports whether this platform gives the whole measurement: not
// without TCP_INFO.
const measures = false

func forceDF(string, string, syscall.RawConn) error { return nil }

func clearsDF() bool { return false }
