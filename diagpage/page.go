package diagpage

import (
	"bytes"
	_ "embed"
	"encoding/json"
)

// page is the diagnostic page: HTML with its script inline, no external
// resources. {{CONFIG}} stands for the pageConfig's JSON.
//
//go:embed page.html
var page []byte

// pageHTML returns the page with cfg filled in. encoding/json escapes <, >
// and &, so the JSON cannot end its script element.
func pageHTML(cfg pageConfig) []byte {
	raw, err := json.Marshal(cfg)
	if err != nil {
		panic(err) // a pageConfig always encodes
	}
	return bytes.Replace(page, []byte("{{CONFIG}}"), raw, 1)
}
