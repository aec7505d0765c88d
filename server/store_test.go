package server

import (
	"testing"

	"github.com/burrow-relay/burrow/storage"
)

func newTestStore(t *testing.T) storage.Store {
	t.Helper()
	return newMemStore()
}
