package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is a long-running process the lab started in one of its
// namespaces (a server). The lab stops it on Close if nobody did before.
type Process struct {
	l    *Lab
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, after done

	stdin io.Closer // closed on Stop: re-exec'd servers exit on EOF

	mu  sync.Mutex
	out bytes.Buffer // stdout and stderr, after any ready line
}

// lockedWriter appends to the process's output buffer.
type lockedWriter struct{ p *Process }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// Start starts name in the namespace of side s and returns it running. Its
// output is kept (see Output); it is stopped by Stop or by the lab's Close.
func (l *Lab) Start(s Side, name string, arg ...string) (*Process, error) {
	cmd := l.Command(context.Background(), s, name, arg...)
	p := &Process{l: l, name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = lockedWriter{p}, lockedWriter{p}
	if err := l.startProcess(p); err != nil {
		return nil, err
	}
	return p, nil
}

// startProcess starts p.cmd and tracks it; it fails once the lab is closed.
func (l *Lab) startProcess(p *Process) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab: closed")
	}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("lab: start %s: %w", p.name, err)
	}
	l.procs[p] = struct{}{}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return nil
}

// Pid returns the process id (that of the program itself: ip netns exec
// execs it).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Output returns what the process has written so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Stop ends the process: it closes its stdin and sends SIGTERM, then
// SIGKILL after 3 s, and waits for it. It is safe to call more than once.
func (p *Process) Stop() error {
	if p.stdin != nil {
		p.stdin.Close()
	}
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	p.l.mu.Lock()
	delete(p.l.procs, p)
	p.l.mu.Unlock()
	return nil
}
