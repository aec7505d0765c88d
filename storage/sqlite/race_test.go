//go:build race

package sqlite

// bigAuthorEvents is how many events the chunked-removal tests give their
// author. The race detector makes the pure-Go SQLite engine about ten
// times slower, so under it the tests remove 10,000 events (the chunking
// is the same); without it, 100,000 as issue 14 asks.
const bigAuthorEvents = 10_000
