package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Environment variables of a re-executed test binary.
const (
	envFunc = "FITLAB_FUNC" // the registered function to run
	envArgs = "FITLAB_ARGS" // its arguments, JSON
)

// ClientFunc is a function that runs inside a lab namespace, in a
// re-executed test binary. args is what the test passed (JSON); the result
// is JSON-encoded back to the test. ctx ends if the test binary goes away.
type ClientFunc func(ctx context.Context, args json.RawMessage) (any, error)

// ServerFunc is a long-running function that runs in the server namespace.
// It calls ready once it serves (info is JSON-encoded back to the test) and
// returns when ctx ends (Process.Stop, or the test binary going away).
type ServerFunc func(ctx context.Context, args json.RawMessage, ready func(info any)) error

var (
	regMu   sync.Mutex
	clients = map[string]ClientFunc{}
	servers = map[string]ServerFunc{}
)

// RegisterClient registers a client function under name. Call it from an
// init function (or before Main), so that the re-executed test binary has
// it too. It panics if name is taken.
func RegisterClient(name string, f ClientFunc) { register(clients, "client", name, f) }

// RegisterServer registers a server function under name, like
// RegisterClient.
func RegisterServer(name string, f ServerFunc) { register(servers, "server", name, f) }

func register[F any](m map[string]F, kind, name string, f F) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := m[name]; dup {
		panic("lab: " + kind + " " + name + " registered twice")
	}
	m[name] = f
}

// Main is the TestMain of a package with lab tests:
//
//	func TestMain(m *testing.M) { lab.Main(m) }
//
// In a test binary re-executed by the lab it runs the registered function
// and exits; otherwise it runs the tests, then tears down any lab still up
// (they also go on SIGINT, SIGTERM, and shortly before -test.timeout would
// end the binary), and exits.
func Main(m *testing.M) {
	if name := os.Getenv(envFunc); name != "" {
		os.Exit(child(name))
	}
	if !flag.Parsed() {
		flag.Parse()
	}
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, ok := f.Value.(flag.Getter).Get().(time.Duration); ok && d > 0 {
			margin := min(10*time.Second, d/10)
			time.AfterFunc(d-margin, func() {
				if n := closeAll(); n > 0 {
					fmt.Fprintf(os.Stderr, "lab: -test.timeout %v is near: tore down %d lab(s)\n", d, n)
				}
			})
		}
	}
	if missing(false) == "" && !testing.Short() {
		go Certificates() // start the slow RSA-4096 keys early
	}
	code := m.Run()
	closeAll()
	os.Exit(code)
}

// envelope is what a re-executed binary writes on stdout.
type envelope struct {
	Result json.RawMessage `json:"result,omitempty"`
	Ready  json.RawMessage `json:"ready,omitempty"`
	Error  string          `json:"error,omitempty"`
}

func child(name string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	args := json.RawMessage(os.Getenv(envArgs))
	if len(args) == 0 {
		args = json.RawMessage("null")
	}
	regMu.Lock()
	cf, sf := clients[name], servers[name]
	regMu.Unlock()
	enc := json.NewEncoder(os.Stdout)
	switch {
	case cf != nil:
		res, err := cf(ctx, args)
		var env envelope
		if err != nil {
			env.Error = err.Error()
		} else if env.Result, err = json.Marshal(res); err != nil {
			env.Error = "lab: encoding the result: " + err.Error()
		}
		if err := enc.Encode(env); err != nil {
			fmt.Fprintln(os.Stderr, "lab:", err)
			return 2
		}
		return 0
	case sf != nil:
		// The parent keeps our stdin open; EOF means stop.
		go func() {
			io.Copy(io.Discard, os.Stdin)
			stop()
		}()
		var once sync.Once
		readied := false
		ready := func(info any) {
			once.Do(func() {
				raw, err := json.Marshal(info)
				if err != nil {
					raw = json.RawMessage("null")
				}
				readied = true
				enc.Encode(envelope{Ready: raw})
			})
		}
		err := sf(ctx, args, ready)
		if err != nil {
			if !readied {
				enc.Encode(envelope{Error: err.Error()})
			}
			fmt.Fprintln(os.Stderr, "lab: server", name+":", err)
			return 1
		}
		return 0
	}
	regMu.Lock()
	var names []string
	for n := range clients {
		names = append(names, n)
	}
	for n := range servers {
		names = append(names, n)
	}
	regMu.Unlock()
	sort.Strings(names)
	enc.Encode(envelope{Error: fmt.Sprintf("lab: no function %q registered (have %v)", name, names)})
	return 2
}

// ClientError is a client function's own error, or a re-executed binary
// that failed to report a result.
type ClientError struct {
	Name   string
	Msg    string
	Stderr string // the tail of its standard error
}

func (e *ClientError) Error() string {
	s := fmt.Sprintf("lab: client %s: %s", e.Name, e.Msg)
	if e.Stderr != "" {
		s += "\nstderr:\n" + e.Stderr
	}
	return s
}

// RunClient runs the client function registered as name in the client
// namespace, with args JSON-encoded, and returns its JSON result. It fails
// with a *ClientError if the function returned an error or the process
// did not report (a panic, a race report, a missing lab.Main in TestMain).
// ctx bounds the whole process.
func (l *Lab) RunClient(ctx context.Context, name string, args any) (json.RawMessage, error) {
	return l.RunIn(ctx, Client, name, args)
}

// RunIn is RunClient in the namespace of side s.
func (l *Lab) RunIn(ctx context.Context, s Side, name string, args any) (json.RawMessage, error) {
	cmd, err := l.reexec(ctx, s, name, args)
	if err != nil {
		return nil, err
	}
	return runReexec(cmd, name)
}

// RunHost runs the client function registered as name in a re-executed
// test binary in the host namespace (outside any lab), e.g. to test the
// lab's own teardown from a separate process.
func RunHost(ctx context.Context, name string, args any) (json.RawMessage, error) {
	cmd, err := HostCommand(ctx, name, args)
	if err != nil {
		return nil, err
	}
	return runReexec(cmd, name)
}

// HostCommand returns the command RunHost runs, for a caller that wants to
// signal it or read its output as it comes.
func HostCommand(ctx context.Context, name string, args any) (*exec.Cmd, error) {
	exe, env, err := reexecParts(name, args)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	return cmd, nil
}

func reexecParts(name string, args any) (exe string, env []string, err error) {
	raw, err := json.Marshal(args)
	if err != nil {
		return "", nil, fmt.Errorf("lab: encoding args of %s: %w", name, err)
	}
	exe, err = os.Executable()
	if err != nil {
		return "", nil, err
	}
	env = append(os.Environ(), envFunc+"="+name, envArgs+"="+string(raw))
	if g := clientGODEBUG[name]; g != "" {
		// Later settings win, and the last GODEBUG in env wins.
		env = append(env, "GODEBUG="+strings.TrimPrefix(os.Getenv("GODEBUG")+","+g, ","))
	}
	return exe, env, nil
}

func (l *Lab) reexec(ctx context.Context, s Side, name string, args any) (*exec.Cmd, error) {
	exe, env, err := reexecParts(name, args)
	if err != nil {
		return nil, err
	}
	// -test.run=^$: if TestMain forgot lab.Main, run no tests, print
	// no envelope, and fail clearly.
	cmd := l.Command(ctx, s, exe, "-test.run=^$")
	cmd.Env = env
	return cmd, nil
}

func runReexec(cmd *exec.Cmd, name string) (json.RawMessage, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var env envelope
	if err := json.Unmarshal(lastLine(stdout.Bytes()), &env); err != nil {
		msg := "no result on stdout (does TestMain call lab.Main?)"
		if runErr != nil {
			msg += ": " + runErr.Error()
		}
		return nil, &ClientError{Name: name, Msg: msg, Stderr: tail(stderr.String(), 4096)}
	}
	if env.Error != "" {
		return nil, &ClientError{Name: name, Msg: env.Error, Stderr: tail(stderr.String(), 4096)}
	}
	if runErr != nil {
		return env.Result, &ClientError{Name: name, Msg: runErr.Error(), Stderr: tail(stderr.String(), 4096)}
	}
	return env.Result, nil
}

// StartServer starts the server function registered as name in the server
// namespace and waits (bounded by ctx) until it calls ready; it returns the
// running process and the info passed to ready.
func (l *Lab) StartServer(ctx context.Context, name string, args any) (*Process, json.RawMessage, error) {
	return l.startServerIn(ctx, Server, name, args)
}

// startServerIn is StartServer in the namespace of side s.
func (l *Lab) startServerIn(ctx context.Context, s Side, name string, args any) (*Process, json.RawMessage, error) {
	cmd, err := l.reexec(context.Background(), s, name, args)
	if err != nil {
		return nil, nil, err
	}
	p := &Process{l: l, name: name, cmd: cmd, done: make(chan struct{})}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	p.stdin = stdin
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = lockedWriter{p}
	if err := l.startProcess(p); err != nil {
		return nil, nil, err
	}
	lines := make(chan []byte, 1)
	go func() {
		br := bufio.NewReader(stdout)
		line, _ := br.ReadBytes('\n')
		lines <- line
		io.Copy(lockedWriter{p}, br)
	}()
	select {
	case line := <-lines:
		var env envelope
		if err := json.Unmarshal(line, &env); err != nil || env.Ready == nil {
			p.Stop()
			msg := env.Error
			if msg == "" {
				msg = fmt.Sprintf("no ready line (got %q)", line)
			}
			return nil, nil, &ClientError{Name: name, Msg: msg, Stderr: tail(p.Output(), 4096)}
		}
		return p, env.Ready, nil
	case <-ctx.Done():
		p.Stop()
		return nil, nil, &ClientError{Name: name, Msg: "not ready: " + ctx.Err().Error(), Stderr: tail(p.Output(), 4096)}
	}
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
