package tlswatch

// TLS record content types.
const (
	recChangeCipherSpec = 20
	recAlert            = 21
	recHandshake        = 22
	recApplicationData  = 23
)

// encryptedAlertLen is the length of a TLS 1.3 alert record under AEAD: 2
// bytes of alert, 1 of inner content type, a 16-byte tag. A Finished is
// longer (its hash, 32 or 48 bytes, plus 17), so after our flight a record
// of this length is the client's alert.
const encryptedAlertLen = 2 + 1 + 16

// records follows the record headers of one direction of a TLS stream
// through the bytes that pass, whatever their split into reads or writes.
// It keeps no bytes but a header.
type records struct {
	hdr  [5]byte
	n    int // bytes of hdr filled
	skip int // bytes of the current record's body still to pass
	// first holds the start of the first record's body (for a server
	// flight: a HelloRetryRequest's random); firstN of it filled.
	first  [hrrEnd]byte
	firstN int
	count  int // records whose header passed
}

// hrrEnd is where a ServerHello's random ends in its record's body: type
// (1), length (3), version (2), random (32).
const hrrEnd = 1 + 3 + 2 + 32

// helloRetryRandom is the random of a TLS 1.3 HelloRetryRequest (RFC 8446
// 4.1.3): a client that gets one sends a second hello.
var helloRetryRandom = [32]byte{
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
}

// feed passes b and calls on for each record header in it, with the
// record's type and body length; it stops and returns false when on does.
func (r *records) feed(b []byte, on func(typ byte, length int) bool) bool {
	for len(b) > 0 {
		if r.skip > 0 {
			if r.count == 1 && r.firstN < len(r.first) {
				r.firstN += copy(r.first[r.firstN:], b[:min(len(b), r.skip)])
			}
			k := min(len(b), r.skip)
			r.skip -= k
			b = b[k:]
			continue
		}
		k := copy(r.hdr[r.n:], b)
		r.n += k
		b = b[k:]
		if r.n < len(r.hdr) {
			return true
		}
		r.n = 0
		r.count++
		length := int(r.hdr[3])<<8 | int(r.hdr[4])
		r.skip = length
		if !on(r.hdr[0], length) {
			return false
		}
	}
	return true
}

// helloRetry reports whether the first record was a HelloRetryRequest.
func (r *records) helloRetry() bool {
	return r.firstN == len(r.first) && [32]byte(r.first[6:hrrEnd]) == helloRetryRandom
}

// restart forgets the first record, for the flight after a
// HelloRetryRequest.
func (r *records) restart() { r.firstN, r.count = 0, 0 }
