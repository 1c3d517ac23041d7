// Package leaktest checks that a test leaves no goroutines or file
// descriptors behind. It is for the module's tests only.
package leaktest

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// Check fails t if goroutines or file descriptors started during it are
// still there shortly (2 s) after it ends. Call it first, so that its
// cleanup runs last. Descriptors are counted where /proc/self/fd exists
// (Linux); elsewhere only goroutines are.
func Check(t testing.TB) {
	t.Helper()
	g0, f0 := runtime.NumGoroutine(), countFDs()
	t.Cleanup(func() {
		var g, f int
		for range 100 {
			g, f = runtime.NumGoroutine(), countFDs()
			if g <= g0 && f <= f0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		buf := make([]byte, 1<<16)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("leak: goroutines %d → %d, fds %d → %d %v\n%s", g0, g, f0, f, fdNames(), buf)
	})
}

// fdNames lists what the process's descriptors point to.
func fdNames() []string {
	es, _ := os.ReadDir("/proc/self/fd")
	var names []string
	for _, e := range es {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		names = append(names, e.Name()+"→"+target)
	}
	return names
}

func countFDs() int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(es)
}
