package pmtu

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

// TestLookupRouteAgreesWithIP compares the kernel's answer as lookupRoute
// reads it with what "ip route get" prints for the same destinations.
func TestLookupRouteAgreesWithIP(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command (iproute2)")
	}
	for _, dst := range []netip.Addr{defaultDst4, defaultDst6, netip.MustParseAddr("127.0.0.1")} {
		out, err := exec.Command("ip", "-o", "route", "get", dst.String()).Output()
		r, lerr := lookupRoute(dst)
		if err != nil {
			if lerr == nil {
				t.Errorf("%v: ip found no route (%v), lookupRoute found %+v", dst, err, r)
			}
			continue
		}
		if lerr != nil {
			t.Fatalf("%v: %v; ip says %s", dst, lerr, out)
		}
		f := strings.Fields(string(out))
		want := route{local: f[0] == "local"}
		for i := 0; i+1 < len(f); i++ {
			switch f[i] {
			case "dev":
				want.dev = f[i+1]
			case "via":
				want.gateway = netip.MustParseAddr(f[i+1])
			case "src":
				want.src = netip.MustParseAddr(f[i+1])
			}
		}
		if r != want {
			t.Errorf("%v: lookupRoute %+v, ip route get %+v (%s)", dst, r, want, out)
		}
	}
}

// BenchmarkLookupRoute prices what a dial to an address not looked up in
// the last two seconds pays before it connects:
//
//	go test -run '^$' -bench LookupRoute ./pmtu/
func BenchmarkLookupRoute(b *testing.B) {
	for b.Loop() {
		if _, err := lookupRoute(defaultDst4); err != nil {
			b.Skip(err)
		}
	}
}
