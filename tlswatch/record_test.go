package tlswatch

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRecordsSplit feeds the same stream split at every point in two: the
// headers seen are the same whatever the split.
func TestRecordsSplit(t *testing.T) {
	rec := func(typ byte, n int) []byte {
		b := append([]byte{typ, 3, 3, byte(n >> 8), byte(n)}, make([]byte, n)...)
		return b
	}
	stream := append(append(append(rec(recHandshake, 512), rec(recChangeCipherSpec, 1)...), rec(recApplicationData, 53)...), rec(recAlert, 2)...)
	type hdr struct {
		typ byte
		n   int
	}
	want := []hdr{{recHandshake, 512}, {recChangeCipherSpec, 1}, {recApplicationData, 53}, {recAlert, 2}}
	for cut := 0; cut <= len(stream); cut++ {
		var r records
		var got []hdr
		on := func(typ byte, n int) bool { got = append(got, hdr{typ, n}); return true }
		r.feed(stream[:cut], on)
		r.feed(stream[cut:], on)
		require.Equal(t, want, got, "cut at %d", cut)
	}
}

func TestRecordsHelloRetry(t *testing.T) {
	sh := func(random [32]byte) []byte {
		body := append([]byte{2, 0, 0, 70, 3, 3}, random[:]...)
		body = append(body, make([]byte, 40)...)
		return append([]byte{recHandshake, 3, 3, 0, byte(len(body))}, body...)
	}
	for _, tc := range []struct {
		random [32]byte
		want   bool
	}{{helloRetryRandom, true}, {[32]byte{1, 2, 3}, false}} {
		b := sh(tc.random)
		for cut := range b {
			var r records
			r.feed(b[:cut], func(byte, int) bool { return true })
			r.feed(b[cut:], func(byte, int) bool { return true })
			assert.Equal(t, tc.want, r.helloRetry(), "cut at %d", cut)
		}
	}
}
