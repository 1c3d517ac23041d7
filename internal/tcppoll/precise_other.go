//go:build !linux

package tcppoll

import "time"

// afterPrecise reports that this platform has no timer finer than the
// runtime's: the caller sets its own.
func afterPrecise(time.Duration, func()) bool { return false }
