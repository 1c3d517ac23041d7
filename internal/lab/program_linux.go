package lab

import (
	"fmt"
	"path/filepath"
	"time"
)

// StartProgram starts a program of the test's own (an example built into
// a temporary directory, a server binary) in the namespace of side s and
// returns once it listens on every host:port in listen (as "ss -ltn" in
// that namespace shows, a wildcard of the family counting), within 30
// seconds. Its output is kept (Process.Output); Process.Stop ends it with
// SIGTERM, as an operator would, and the lab's Close if nobody did. On
// failure it stops the program and returns its output in the error.
func (l *Lab) StartProgram(s Side, listen []string, name string, arg ...string) (*Process, error) {
	p, err := l.Start(s, name, arg...)
	if err != nil {
		return nil, err
	}
	if err := l.waitListeningIn(s, p, listen, 30*time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("lab: %s: %w\noutput: %s", filepath.Base(name), err, p.Output())
	}
	return p, nil
}
