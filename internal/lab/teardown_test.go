//go:build linux

package lab_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// holdInfo is what the lab-hold client prints once its lab is up.
type holdInfo struct {
	Prefix string
	PIDs   []int // nginx and the Go server
}

func init() {
	// lab-hold builds a lab with servers in a separate test binary (in the
	// host namespace), prints where it is, and waits to be signalled.
	lab.RegisterClient("lab-hold", func(ctx context.Context, _ json.RawMessage) (any, error) {
		l, err := lab.Open(lab.Config{Scenario: lab.Blackhole})
		if err != nil {
			return nil, err
		}
		ng, err := l.StartNginx()
		if err != nil {
			return nil, err
		}
		gs, err := l.StartGoServer()
		if err != nil {
			return nil, err
		}
		b, _ := json.Marshal(holdInfo{Prefix: l.Prefix(), PIDs: []int{ng.Pid(), gs.Pid()}})
		fmt.Printf("HOLD %s\n", b)
		<-ctx.Done()
		select {} // the lab's own signal handler tears down and exits
	})
}

// labChild is the body of a child test binary that TestTeardownOnFailure
// and TestTeardownOnTimeout run (with FITLAB_HELPER set) to see that a
// failing or timed-out test still tears its lab down.
func labChild(t *testing.T, mode string) {
	l := lab.New(t, lab.Config{Scenario: lab.MTUICMPBlocked})
	_, err := l.StartNginx()
	require.NoError(t, err)
	fmt.Printf("PREFIX=%s\n", l.Prefix())
	switch mode {
	case "fail":
		t.Fatal("deliberate failure")
	case "hang":
		time.Sleep(time.Minute)
	}
}

func gone(t *testing.T, prefix string, pids []int) {
	t.Helper()
	require.NotEmpty(t, prefix)
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	require.NoError(t, err)
	for _, line := range strings.Split(string(out), "\n") {
		assert.False(t, strings.HasPrefix(line, prefix), "namespace %q left behind", line)
	}
	for _, pid := range pids {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err == nil {
			// A zombie waiting for a reaper is dead enough.
			f := strings.Fields(string(stat))
			assert.True(t, len(f) > 2 && f[2] == "Z", "process %d left running: %s", pid, stat)
		}
	}
}

// TestTeardownOnSignal interrupts a test binary that has a lab with servers
// up, with SIGINT (Ctrl-C) and SIGTERM, and checks that its namespaces and
// processes are gone.
func TestTeardownOnSignal(t *testing.T) {
	lab.Require(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd, err := lab.HostCommand(ctx, "lab-hold", nil)
			require.NoError(t, err)
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			var stderr lab.SyncBuffer
			cmd.Stderr = &stderr
			require.NoError(t, cmd.Start())
			var info holdInfo
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "HOLD "); ok {
					require.NoError(t, json.Unmarshal([]byte(rest), &info))
					break
				}
			}
			require.NotEmpty(t, info.Prefix, "the child did not bring its lab up: %s", stderr.String())
			out, _ := exec.Command("ip", "netns", "list").Output()
			require.Contains(t, string(out), info.Prefix+"c")
			require.NoError(t, cmd.Process.Signal(sig))
			err = cmd.Wait()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "exit: %v", err)
			assert.Equal(t, 130, ee.ExitCode(), "stderr: %s", stderr.String())
			assert.Contains(t, stderr.String(), "tore down 1 lab")
			gone(t, info.Prefix, info.PIDs)
		})
	}
}

var prefixRE = regexp.MustCompile(`PREFIX=(\w+)`)

// runHelper runs this test binary again, only the test named test, as a
// child whose labChild runs in mode; it returns the child's lab prefix.
func runHelper(t *testing.T, test, mode string, extra ...string) string {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, append([]string{"-test.run=^" + test + "$", "-test.v"}, extra...)...)
	cmd.Env = append(os.Environ(), "FITLAB_HELPER="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the helper should have failed:\n%s", out)
	m := prefixRE.FindSubmatch(out)
	require.NotNil(t, m, "no PREFIX= in the helper's output:\n%s", out)
	return string(m[1])
}

// TestTeardownOnFailure runs a test that fails after building a lab and
// checks that t.Cleanup removed it.
func TestTeardownOnFailure(t *testing.T) {
	if mode := os.Getenv("FITLAB_HELPER"); mode != "" {
		labChild(t, mode)
		return
	}
	lab.Require(t)
	t.Parallel()
	prefix := runHelper(t, "TestTeardownOnFailure", "fail")
	gone(t, prefix, nil)
}

// TestTeardownOnTimeout runs a test that hangs past -test.timeout (whose
// panic skips every t.Cleanup) and checks that lab.Main tore the lab down
// just before.
func TestTeardownOnTimeout(t *testing.T) {
	if mode := os.Getenv("FITLAB_HELPER"); mode != "" {
		labChild(t, mode)
		return
	}
	lab.Require(t)
	t.Parallel()
	prefix := runHelper(t, "TestTeardownOnTimeout", "hang", "-test.timeout=8s")
	gone(t, prefix, nil)
}
