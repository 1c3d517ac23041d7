package probe_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/fitshake/fitshake/probe"
)

// Probe a server and print the summary a person reads, with each step as
// it runs.
func ExampleRun() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := probe.Run(ctx, "example.com:443", probe.Options{
		Progress: func(s probe.Step) { fmt.Fprintf(os.Stderr, "[%d] %s\n", s.N, s.What) },
	})
	if err != nil {
		log.Fatal(err) // bad input, or no TCP connection at all
	}
	fmt.Print(res)
	if !res.Healthy {
		for _, f := range res.Fixes {
			fmt.Println(f)
		}
	}
}

// The JSON object of `diagnose -json`, for scripts and dashboards.
func ExampleResult_json() {
	res, err := probe.Run(context.Background(), "example.com:443", probe.Options{Network: "tcp6"})
	if err != nil {
		log.Fatal(err)
	}
	b, _ := json.Marshal(struct {
		Healthy       bool     `json:"healthy"`
		UpstreamMTU   int      `json:"upstream_mtu"`
		DownstreamMTU int      `json:"downstream_mtu"`
		Class         string   `json:"class"`
		Fixes         []string `json:"fixes"`
	}{res.Healthy, res.UpstreamMTU, res.DownstreamMTU, res.Class, res.Fixes})
	fmt.Println(string(b))
}
