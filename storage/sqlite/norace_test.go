//go:build !race

package sqlite

// bigAuthorEvents: see race_test.go.
const bigAuthorEvents = 100_000
