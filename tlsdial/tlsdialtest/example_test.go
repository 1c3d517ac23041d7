package tlsdialtest_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial/tlsdialtest"
)

// A test that a client falls back through a 1400-byte black hole, and how.
func Example() {
	t := &testing.T{} // in a test, the test's own t
	srv := tlsdialtest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello over "+r.Proto)
	}))
	hole := pmtutest.NewProxy(t, srv.Listener.Addr().String(), 1400)
	client := tlsdialtest.NewClient(t, srv)

	resp, err := client.Get("https://" + hole.Addr() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	report := client.Report(resp)
	fmt.Printf("%s; stalled %d time(s), then MSS %d\n", body, report.Stalls(), report.MSS)
	// Output: hello over HTTP/2.0; stalled 1 time(s), then MSS 1360
}

// With a kernel path the same test runs behind a router that drops the
// packets, and the Report shows what TCP_INFO saw.
func ExampleNewKernelPath() {
	var t *testing.T // in a test, the test's own t (this example is not run)
	p := tlsdialtest.NewKernelPath(t, 1400)
	if p == nil {
		return // the test ran in the client namespace; this is its result
	}
	srv := p.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	client := tlsdialtest.NewClient(t, srv)
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	t.Log(client.Report(resp)) // attempt 1: … stall after 9ms: upstream black hole
}
