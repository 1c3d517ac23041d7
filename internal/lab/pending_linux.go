package lab

import "strings"

// helloRejected reports errors.Is(err, tlsdial.ErrHelloRejected): fitshake
// found that a box on the path refuses the ClientHello itself, whatever the
// MSS.
//
// tlsdial.ErrHelloRejected is not on main yet (issue 8: the compact
// post-quantum rung and the middlebox classes). Until it is, this looks
// for the sentinel by its message: an error in err's tree that wraps
// nothing, whose message starts with "tlsdial: " and mentions "reject".
// Replace the body with errors.Is(err, tlsdial.ErrHelloRejected) when it
// lands.
func helloRejected(err error) bool {
	if err == nil {
		return false
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return helloRejected(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if helloRejected(e) {
				return true
			}
		}
		return false
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "tlsdial: ") && strings.Contains(strings.ToLower(msg), "reject")
}
