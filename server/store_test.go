package server

import (
	"context"
	"testing"

	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/sqlite"
)

// newTestStore opens a fresh SQLite store (the embedded default backend)
// for one test.
func newTestStore(t testing.TB) storage.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: t.TempDir() + "/relay.db"})
	if err != nil {
		t.Fatalf("opening sqlite store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}
