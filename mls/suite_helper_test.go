package mls_test

import (
	"errors"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
)

// countedSuite returns the suite of a vector case and counts the case under
// it; a suite the engine does not implement is counted as unsupported and
// ok is false, so the caller skips the case visibly rather than silently.
func countedSuite(t *testing.T, count *vectortest.Counter, cs uint64) (suite *cipher.Suite, ok bool) {
	t.Helper()
	suite, err := cipher.New(cipher.CipherSuite(cs))
	if errors.Is(err, cipher.ErrUnsupportedCipherSuite) {
		count.Add(vectortest.Suite(cs) + " (unsupported)")
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	count.Add(vectortest.Suite(cs))
	return suite, true
}
