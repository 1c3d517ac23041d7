package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The browser the lab drives: Debian's chromium and chromium-driver.
var browserTools = []string{"chromium", "chromedriver"}

// RequireBrowser is Require, and also skips t (fails it under CI=true)
// unless chromium and chromedriver are installed (Debian: apt-get install
// chromium chromium-driver).
func RequireBrowser(t testing.TB) {
	t.Helper()
	Require(t)
	var absent []string
	for _, tool := range browserTools {
		if toolPath(tool) == tool {
			absent = append(absent, tool)
		}
	}
	if len(absent) == 0 {
		return
	}
	msg := "lab: missing " + strings.Join(absent, ", ") + "; the browser lab tests need: apt-get install chromium chromium-driver"
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s [CI=true: the lab must run in CI]", msg)
	}
	t.Skip(msg)
}

// BrowseArgs tell Browse what to load and when it is done.
type BrowseArgs struct {
	URL string
	// Done lists the page titles that end the wait.
	Done []string
	// Read lists the ids of elements whose textContent Browse returns.
	Read []string
	// Timeout bounds the wait for a Done title, from the navigation;
	// zero means 60 s. Starting the browser comes on top (a few seconds).
	Timeout time.Duration
	// AcceptInsecureCerts lets the browser load an https page whose
	// certificate it does not trust (the lab's CA is not in its store):
	// WebDriver's acceptInsecureCerts. The TLS handshake is the same.
	AcceptInsecureCerts bool
}

// BrowseResult is what Browse saw.
type BrowseResult struct {
	Title string
	// Text is the textContent of each element of BrowseArgs.Read that
	// exists, by id.
	Text map[string]string
	// Elapsed is the time from the navigation to a Done title (or to the
	// timeout); Startup the time to start the browser before it.
	Elapsed, Startup time.Duration
	TimedOut         bool
}

// browserClient is the registered name of the browser client function.
const browserClient = "lab-browser"

func init() { RegisterClient(browserClient, browse) }

// Browse loads a page in a real headless Chromium in the client namespace,
// driven through chromedriver's WebDriver HTTP API, waits for one of the
// titles of args.Done, and returns the title and the text of the elements
// of args.Read. A fresh profile each time; QUIC, background networking,
// component updates and sync are off, so the page's requests are the only
// traffic. Chromium runs as root, hence --no-sandbox. Browse fails (with
// chromedriver's log) only when the browser could not be driven; a page
// that never reaches a Done title is a result with TimedOut.
func (l *Lab) Browse(ctx context.Context, args BrowseArgs) (BrowseResult, error) {
	return l.BrowseFrom(ctx, Client, args)
}

// browse is the client function behind Browse.
func browse(ctx context.Context, raw json.RawMessage) (any, error) {
	var a BrowseArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, err
	}
	if a.Timeout <= 0 {
		a.Timeout = 60 * time.Second
	}
	t0 := time.Now()
	d, err := startDriver(ctx)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	res, err := d.run(ctx, a, t0)
	if err != nil {
		return nil, fmt.Errorf("%w\nchromedriver: %s", err, tail(d.log.String(), 4096))
	}
	return res, nil
}

// driver is a chromedriver process of this client, on a loopback port.
type driver struct {
	cmd  *exec.Cmd
	base string // http://127.0.0.1:PORT
	dir  string // the browser profile
	log  SyncBuffer
	hc   *http.Client
}

func startDriver(ctx context.Context) (*driver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "fitlab-chromium-")
	if err != nil {
		return nil, err
	}
	d := &driver{base: "http://127.0.0.1:" + strconv.Itoa(port), dir: dir, hc: &http.Client{Timeout: 90 * time.Second}}
	d.cmd = exec.Command(toolPath("chromedriver"), "--port="+strconv.Itoa(port))
	// Its own process group, so that stop can end chromedriver and the
	// browser it started, and nothing else; SIGKILL if we die.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	d.cmd.Stdout, d.cmd.Stderr = &d.log, &d.log
	if err := d.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		if err := d.call(ctx, http.MethodGet, "/status", nil, nil); err == nil {
			return d, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.stop()
			return nil, fmt.Errorf("lab: chromedriver not ready after 15 s: %s", d.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends chromedriver's process group (chromedriver and its browser)
// by its id, and removes the profile.
func (d *driver) stop() {
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	d.cmd.Wait()
	os.RemoveAll(d.dir)
}

// call makes one WebDriver request and decodes its "value" into out.
func (d *driver) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("lab: webdriver %s %s: %s: %s", method, path, resp.Status, b)
	}
	if out == nil {
		return nil
	}
	var env struct{ Value json.RawMessage }
	if err := json.Unmarshal(b, &env); err != nil {
		return err
	}
	return json.Unmarshal(env.Value, out)
}

// chromiumBinary is the browser itself: Debian's /usr/bin/chromium is a
// shell script that adds flags of its own.
func chromiumBinary() string {
	if _, err := os.Stat("/usr/lib/chromium/chromium"); err == nil {
		return "/usr/lib/chromium/chromium"
	}
	return toolPath("chromium")
}

func (d *driver) run(ctx context.Context, a BrowseArgs, t0 time.Time) (BrowseResult, error) {
	var res BrowseResult
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		// "none": navigation returns at once; we wait for the title.
		// (With "normal", chromedriver first waits ~9 s on the new
		// tab's pending navigation.)
		"pageLoadStrategy":    "none",
		"acceptInsecureCerts": a.AcceptInsecureCerts,
		"goog:chromeOptions": map[string]any{
			"binary": chromiumBinary(),
			"args": []string{
				"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
				"--no-first-run", "--disable-background-networking", "--disable-component-update",
				"--disable-sync", "--disable-dev-shm-usage", "--no-proxy-server",
				"--user-data-dir=" + d.dir,
			},
		},
	}}}
	var sess struct {
		SessionID string `json:"sessionId"`
	}
	if err := d.call(ctx, http.MethodPost, "/session", caps, &sess); err != nil {
		return res, err
	}
	s := "/session/" + sess.SessionID
	res.Startup = time.Since(t0)
	t1 := time.Now()
	// Commands wait for a pending navigation to commit, whatever the page
	// load strategy: to a server whose handshake never completes they
	// come back only when the browser gives up (30 to 40 s). Bound the
	// wait by Timeout; past that the session is left as it is, for stop
	// to end.
	wait, cancel := context.WithDeadline(ctx, t1.Add(a.Timeout))
	defer cancel()
	abandoned := func(err error) bool { return err != nil && wait.Err() != nil && ctx.Err() == nil }
	if err := d.call(wait, http.MethodPost, s+"/url", map[string]string{"url": a.URL}, nil); err != nil {
		if abandoned(err) {
			res.Elapsed, res.TimedOut = time.Since(t1), true
			return res, nil
		}
		return res, err
	}
	for {
		if err := d.call(wait, http.MethodGet, s+"/title", nil, &res.Title); err != nil {
			if abandoned(err) {
				res.Elapsed, res.TimedOut = time.Since(t1), true
				return res, nil
			}
			return res, err
		}
		if slices.Contains(a.Done, res.Title) {
			break
		}
		if time.Since(t1) > a.Timeout {
			res.TimedOut = true
			break
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.Elapsed = time.Since(t1)
	defer d.call(context.Background(), http.MethodDelete, s, nil, nil)
	script := `const out = {}; for (const id of arguments[0]) { const e = document.getElementById(id); if (e) out[id] = e.textContent; } return out;`
	read := append([]string{}, a.Read...) // [], not null, when none
	if err := d.call(ctx, http.MethodPost, s+"/execute/sync", map[string]any{"script": script, "args": []any{read}}, &res.Text); err != nil {
		return res, errors.Join(errors.New("lab: reading the page"), err)
	}
	return res, nil
}
