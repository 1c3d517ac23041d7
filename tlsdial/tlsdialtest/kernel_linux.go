package tlsdialtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fitshake/fitshake/internal/lab"
)

// envKernel marks the run of a test in a kernel path's client namespace.
const envKernel = "FITSHAKE_TLSDIALTEST_KERNEL"

// kernelRun is what the run in the client namespace is told, in envKernel.
type kernelRun struct {
	Test     string     `json:"test"`
	MTU      int        `json:"mtu"`
	ServerNS string     `json:"server_ns"`
	Server   netip.Addr `json:"server"`
}

func newKernelPath(t *testing.T, mtu int) *KernelPath {
	t.Helper()
	if v := os.Getenv(envKernel); v != "" {
		var run kernelRun
		if err := json.Unmarshal([]byte(v), &run); err != nil {
			t.Fatalf("tlsdialtest: %s: %v", envKernel, err)
		}
		if run.Test != t.Name() {
			t.Fatalf("tlsdialtest: NewKernelPath in %s, in the run for %s", t.Name(), run.Test)
		}
		return &KernelPath{MTU: run.MTU, serverNS: run.ServerNS, server: run.Server}
	}
	if why := lab.Lacks("ip", "nft", "ethtool"); why != "" {
		t.Skipf("tlsdialtest: a kernel path needs root and ip, nft, ethtool (Debian: iproute2 nftables ethtool): %s", why)
	}
	l, err := lab.Open(lab.Config{Scenario: lab.Blackhole, MTU: mtu})
	if err != nil {
		t.Fatalf("tlsdialtest: building the kernel path: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("tlsdialtest: removing the kernel path: %v", err)
		}
	})
	run := kernelRun{Test: t.Name(), MTU: l.Config().N(), ServerNS: l.Namespace(lab.Server), Server: l.IP(lab.Server, lab.IPv4)}
	out, err := runIn(t, l, run)
	t.Logf("in namespace %s (path MTU %d):\n%s", l.Namespace(lab.Client), run.MTU, out)
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name()+" (")) {
		t.Errorf("tlsdialtest: %s did not pass in the client namespace (%v)", t.Name(), err)
	}
	return nil
}

// runIn runs the test binary's test run.Test alone in l's client namespace.
func runIn(t *testing.T, l *lab.Lab, run kernelRun) ([]byte, error) {
	ctx := t.Context()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-time.Until(d)/10))
		defer cancel()
	}
	env, err := json.Marshal(run)
	if err != nil {
		return nil, err
	}
	args := []string{"-test.run", runPattern(run.Test), "-test.count=1", "-test.v=true"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	cmd := l.Command(ctx, lab.Client, os.Args[0], args...)
	cmd.Env = append(os.Environ(), envKernel+"="+string(env))
	return cmd.CombinedOutput()
}

// runPattern is the -test.run pattern that selects the test named name
// (subtests included) and no other.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// listen listens on addr in the server namespace: from a thread of its own
// moved there and back (a socket stays in the namespace it was made in).
func (p *KernelPath) listen(addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		ln, err, restored := listenIn(p.serverNS, addr)
		if restored {
			runtime.UnlockOSThread()
		} // else the thread, in the wrong namespace, ends with the goroutine
		done <- result{ln, err}
	}()
	r := <-done
	return r.ln, r.err
}

// listenIn listens on addr in the named namespace, from the calling locked
// thread, and reports whether the thread is back in its own namespace.
func listenIn(ns, addr string) (ln net.Listener, err error, restored bool) {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err, true
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return nil, err, true
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, os.NewSyscallError("setns", err), true
	}
	ln, err = net.Listen("tcp", addr)
	if rerr := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); rerr != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, errors.Join(err, os.NewSyscallError("setns back", rerr)), false
	}
	return ln, err, true
}
