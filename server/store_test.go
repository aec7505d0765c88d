package server

import (
	"context"
	"testing"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/postgres"
	"github.com/burrow-relay/burrow/storage/sqlite"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

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

// newPostgresStore opens a store on a fresh PostgreSQL database (skipped,
// loudly, when no PostgreSQL is available; see internal/testsvc).
func newPostgresStore(t testing.TB) storage.Store {
	t.Helper()
	st, err := postgres.Open(context.Background(), postgres.Config{URL: testsvc.Postgres(t).URL})
	if err != nil {
		t.Fatalf("opening postgres store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// eachBackend runs f as a subtest on each storage backend.
func eachBackend(t *testing.T, f func(t *testing.T, newStore func(testing.TB) storage.Store)) {
	for _, b := range []struct {
		name string
		open func(testing.TB) storage.Store
	}{{"sqlite", newTestStore}, {"postgres", newPostgresStore}} {
		t.Run(b.name, func(t *testing.T) { f(t, b.open) })
	}
}
