package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/testsvc"
)

// TestCancelledReadStopsInTheServer: a statement whose context ends stops
// in PostgreSQL (a cancel request is sent), not only in the client: a
// COUNT past its deadline or a REQ whose client left frees its server
// backend at once.
func TestCancelledReadStopsInTheServer(t *testing.T) {
	s, err := Open(context.Background(), Config{URL: testsvc.Postgres(t).URL})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.pool.Exec(ctx, `SELECT pg_sleep(30) /* burrow cancel test */`)
	if err == nil || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("a 30 s statement under a 200 ms context returned %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the cancelled statement took %v to return", took)
	}
	// The server no longer runs it (bounded: the cancel request is
	// asynchronous).
	deadline := time.Now().Add(10 * time.Second)
	for {
		var running int
		if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE state = 'active' AND query LIKE '%burrow cancel test%' AND pid <> pg_backend_pid()`).Scan(&running); err != nil {
			t.Fatal(err)
		}
		if running == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the cancelled statement still runs in the server")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
