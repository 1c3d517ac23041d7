package leaktest

import (
	"os"
	"testing"
)

// recorder is a testing.TB whose failures and cleanups are kept for the
// test to look at.
type recorder struct {
	testing.TB
	failed   bool
	cleanups []func()
}

func (r *recorder) Helper()               {}
func (r *recorder) Cleanup(f func())      { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) run() {
	for _, f := range r.cleanups {
		f()
	}
}

// TestCheck: a descriptor left open fails the check; closed, it passes.
func TestCheck(t *testing.T) {
	if _, err := os.ReadDir("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd to count descriptors in")
	}
	r := &recorder{TB: t}
	Check(r)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	r.run()
	if !r.failed {
		t.Error("a descriptor left open passed")
	}
	f.Close()

	r = &recorder{TB: t}
	Check(r)
	f, err = os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	r.run()
	if r.failed {
		t.Error("nothing left open failed")
	}
}
