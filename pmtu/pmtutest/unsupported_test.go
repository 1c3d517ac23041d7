//go:build !linux && !android

package pmtutest_test

import (
	"testing"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/stretchr/testify/assert"
)

// Where the accepted socket's MSS cannot be read, Start says so.
func TestStartUnsupported(t *testing.T) {
	_, err := pmtutest.Start(pmtutest.Config{Target: "127.0.0.1:1"})
	assert.ErrorIs(t, err, pmtu.ErrUnsupported)
}
