package tcppoll

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// afterPrecise runs f in a goroutine of its own d after now, woken by a
// timerfd in the runtime's netpoller, and reports whether it could set
// one up. The goroutine and the descriptor last until it fires.
func afterPrecise(d time.Duration, f func()) bool {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return false
	}
	when := unix.ItimerSpec{Value: unix.NsecToTimespec(d.Nanoseconds())}
	if err := unix.TimerfdSettime(fd, 0, &when, nil); err != nil {
		unix.Close(fd)
		return false
	}
	tf := os.NewFile(uintptr(fd), "tcppoll-timerfd") // non-blocking: the netpoller's
	go func() {
		var n [8]byte // the count of expirations
		tf.Read(n[:])
		tf.Close()
		f() // also if the read failed: a wake that finds nothing due is harmless
	}()
	return true
}
