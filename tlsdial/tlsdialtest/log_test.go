package tlsdialtest_test

import (
	"log"
	"strings"
)

// logger is a log.Logger writing each line to tb.Log, unfiltered.
func logger(tb *logTB) *log.Logger { return log.New(logWriter{tb}, "", 0) }

type logWriter struct{ tb *logTB }

func (w logWriter) Write(b []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
