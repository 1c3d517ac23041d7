//go:build !race

package tlsdial_test

const raceEnabled = false
