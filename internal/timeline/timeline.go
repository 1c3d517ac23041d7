// Package timeline loads the first flights recorded in the namespace lab
// (pmtu/testdata/timelines): TCP_INFO before the ClientHello was written
// and polled every millisecond after it, only the snapshots that changed
// kept. Tests of pmtu.Classify and of tlsdial's dial policy replay them.
package timeline

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// Timeline is one recorded first flight.
type Timeline struct {
	Name      string       `json:"name"`
	Note      string       `json:"note"`
	Sent      int          `json:"sent"` // bytes of the flight
	Base      pmtu.TCPInfo `json:"base"` // before the write
	Snapshots []Snapshot   `json:"snapshots"`
}

// Snapshot is TCP_INFO some time after the write.
type Snapshot struct {
	ElapsedUS int64        `json:"elapsed_us"`
	Info      pmtu.TCPInfo `json:"info"`
}

// Elapsed is the time since the write.
func (s Snapshot) Elapsed() time.Duration { return time.Duration(s.ElapsedUS) * time.Microsecond }

// Load reads the timeline called name.
func Load(name string) (Timeline, error) {
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "pmtu", "testdata", "timelines", name+".json")
	b, err := os.ReadFile(path)
	if err != nil {
		return Timeline{}, err
	}
	var tl Timeline
	if err := json.Unmarshal(b, &tl); err != nil {
		return Timeline{}, fmt.Errorf("timeline %s: %w", name, err)
	}
	if len(tl.Snapshots) == 0 {
		return Timeline{}, fmt.Errorf("timeline %s: no snapshots", name)
	}
	return tl, nil
}

// At returns TCP_INFO as it stood elapsed after the write.
func (tl Timeline) At(elapsed time.Duration) pmtu.TCPInfo {
	ti := tl.Base
	for _, s := range tl.Snapshots {
		if s.Elapsed() > elapsed {
			break
		}
		ti = s.Info
	}
	return ti
}
