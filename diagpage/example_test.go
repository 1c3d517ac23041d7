package diagpage_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/fitshake/fitshake/diagpage"
)

// Mount the page beside a site's other handlers, on the plain-HTTP port.
// Browsers open http://host/fitshake/; its probes are /fitshake/up,
// /fitshake/down and /fitshake/verdict.
func Example() {
	mux := http.NewServeMux()
	mux.Handle("/fitshake/", &diagpage.Handler{})
	srv := httptest.NewServer(mux) // in production: http.Server{Addr: ":80", …}
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/fitshake/")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, strings.Contains(string(page), `id="result"`))
	// Output: 200 OK true
}

// A server for the page alone, with tighter bounds per client. An upstream
// probe that the path loses never reaches the handler: ReadHeaderTimeout
// bounds the connection it leaves.
func ExampleHandler() {
	srv := &http.Server{
		Addr: ":8080",
		Handler: &diagpage.Handler{
			MaxConns: 4,       // the page's own concurrency
			MaxBytes: 1 << 18, // about five runs a minute
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	_ = srv // srv.ListenAndServe()
}
