package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Tools the lab runs.
var tools = []string{"ip", "nft", "ethtool", "nginx", "openssl", "curl",
	"apache2", "haproxy", "gnutls-serv", "lighttpd", "squid"}

// debPackages are the Debian packages that bring the tools.
const debPackages = "iproute2 nftables ethtool nginx-light openssl curl apache2 haproxy gnutls-bin lighttpd squid-openssl postgresql"

// Require skips t unless the lab can run here: root, and the tools ip,
// nft, ethtool, nginx, openssl, curl, the interop matrix's apache2,
// haproxy, gnutls-serv and lighttpd, and squid (Debian's squid-openssl,
// for the Squid scenario; see debPackages). When the
// environment has CI=true it fails t instead, because in CI the lab must
// really run.
//
// Under go test -short it always skips, CI=true or not: -short means "no
// lab" (no namespaces, no servers, no real-kernel timings), so that the
// fast suite runs anywhere in seconds.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("lab: -short: the real-kernel lab tests do not run under go test -short")
	}
	if why := missing(true); why != "" {
		msg := "lab: " + why + "; the real-kernel lab tests need root and: apt-get install " + debPackages + " (then: sudo go test ./internal/lab)"
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s [CI=true: the lab must run in CI]", msg)
		}
		t.Skip(msg)
	}
}

// missing describes what the lab lacks here, or returns "".
func missing(checkNetns bool) string {
	var why []string
	if os.Geteuid() != 0 {
		why = append(why, "not root")
	}
	var absent []string
	for _, tool := range tools {
		if toolPath(tool) == tool {
			absent = append(absent, tool)
		}
	}
	if len(absent) > 0 {
		why = append(why, "missing "+strings.Join(absent, ", "))
	}
	if checkNetns && len(why) == 0 {
		if _, err := os.Stat("/proc/self/ns/net"); err != nil {
			why = append(why, "no network namespaces")
		}
	}
	return strings.Join(why, "; ")
}

// toolPath finds tool in PATH or in the sbin directories a non-login root
// shell may lack; it returns tool itself if not found.
func toolPath(tool string) string {
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"} {
		p := filepath.Join(dir, tool)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return tool
}
