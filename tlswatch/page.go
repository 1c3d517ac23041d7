package tlswatch

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strings"
)

// ServeHTTP serves the status page: plain HTML (no script, no external
// asset) listing the prefixes by failures, each with its completion rate,
// class, evidence and fixes; or the same Status as JSON when the request's
// path ends in ".json", its query has format=json, or it accepts
// application/json and not text/html. Serve it on an admin port: it names
// client networks.
func (w *Watcher) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	st := w.Status()
	rw.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		rw.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(rw)
		enc.SetIndent("", "  ")
		enc.Encode(st) //nolint:errcheck // the client went away
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	page.Execute(rw, st) //nolint:errcheck // the client went away
}

func wantsJSON(r *http.Request) bool {
	if strings.HasSuffix(r.URL.Path, ".json") || r.URL.Query().Get("format") == "json" {
		return true
	}
	a := r.Header.Get("Accept")
	return strings.Contains(a, "application/json") && !strings.Contains(a, "text/html")
}

// Rate returns the completion rate of the handshakes that tried (idle
// connections left out), in percent; 100 when none tried.
func (p PrefixStatus) Rate() float64 {
	tried := p.Completed + p.Failed
	if tried == 0 {
		return 100
	}
	return 100 * float64(p.Completed) / float64(tried)
}

var page = template.Must(template.New("status").Funcs(template.FuncMap{
	"rate": func(p PrefixStatus) string { return fmt.Sprintf("%.1f%%", p.Rate()) },
	"size": func(v int) string {
		if v == 0 {
			return "–"
		}
		return fmt.Sprint(v)
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>TLS handshakes by client network</title>
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:1.5em;max-width:80em;color:#222}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#a00;font-weight:bold}.ok{color:#070}
ul{margin:.2em 0;padding-left:1.2em}code{font-size:90%}
</style></head><body>
<h1>TLS handshakes by client network</h1>
<p>The last {{printf "%.0f" .WindowSeconds}} seconds, most failures first. Idle connections (nothing sent: scanners,
health checks) are neither completed nor failed. As JSON: add <code>?format=json</code>.</p>
{{if not .Prefixes}}<p>No handshakes yet.</p>{{else}}
<table>
<tr><th>prefix</th><th>handshakes</th><th>completed</th><th>failed</th><th>rate</th><th>class</th><th>sizes (SYN MSS, largest received, largest of ours acknowledged, our flight)</th></tr>
{{range .Prefixes}}
<tr id="{{.Prefix}}"><td><code>{{.Prefix}}</code>{{if .Clamped}}<br>clamped to MSS {{.MSS}}{{end}}</td>
<td class="n">{{.Handshakes}}</td><td class="n">{{.Completed}}</td><td class="n">{{.Failed}}</td>
<td class="n">{{rate .}}</td>
<td class="{{if .Failing}}bad{{else}}ok{{end}}">{{.Class}}{{if .Recovered}}<br>{{.Recovered}} recovered by clamping (latest: SYN MSS {{.RecoveredMSS}}){{end}}</td>
<td>{{size .SYNMSSMin}}{{if ne .SYNMSSMin .SYNMSSMax}}–{{size .SYNMSSMax}}{{end}}, {{size .MaxReceived}}, {{size .MaxAcked}}, {{size .Flight}} bytes</td></tr>
{{if or .Evidence .Fixes}}<tr><td></td><td colspan="6">{{if .Evidence}}<p>{{.Evidence}}</p>{{end}}
{{if .Fixes}}<ul>{{range .Fixes}}<li>{{.}}</li>{{end}}</ul>{{end}}</td></tr>{{end}}
{{end}}
</table>{{end}}
{{with .Other}}{{if .Handshakes}}<p>Other networks (past the watcher's bound), together: {{.Handshakes}} handshakes, {{.Completed}} completed, {{.Failed}} failed.</p>{{end}}{{end}}
</body></html>
`))
