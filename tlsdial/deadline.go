package tlsdial

import (
	"sync"
	"time"
)

// deadline turns a deadline that can be moved at any time into a channel
// that is closed while it has passed, as net.Pipe does for its own: a
// goroutine blocked waiting for something else selects on wait() too, and
// wakes when a deadline set meanwhile passes.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	passed chan struct{} // closed while the deadline has passed
}

// set moves the deadline to t; the zero t means none.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.passed // the timer fired: its channel is closed, or about to be
	}
	d.timer = nil
	closed := d.passed != nil && isClosed(d.passed)
	if t.IsZero() {
		if closed || d.passed == nil {
			d.passed = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed || d.passed == nil {
			d.passed = make(chan struct{})
		}
		ch := d.passed
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	if d.passed == nil {
		d.passed = make(chan struct{})
	}
	if !closed {
		close(d.passed)
	}
}

// wait returns a channel that is closed when the deadline passes.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.passed == nil {
		d.passed = make(chan struct{})
	}
	return d.passed
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
