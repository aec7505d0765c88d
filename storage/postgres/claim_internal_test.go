package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// TestClaimSlotLockFreeLoser holds a slot's advisory lock from another
// connection, as a claim in progress would, and checks which claims
// burrow_claim_slot answers without it: only a plain claim losing to a
// committed holder. A retry and a release wait for the lock, and the wait is
// bounded inside PostgreSQL (lock_timeout): they fail with ErrBusy, and when
// the lock is released afterwards nothing of theirs commits (a claim
// reported failed never takes the slot later). The loser is recorded as if
// the lock had been taken.
func TestClaimSlotLockFreeLoser(t *testing.T) {
	pg := testsvc.Postgres(t)
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: pg.URL, LockTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	a := storetest.NewAuthor(t)
	const h = "g"
	slot := storetest.NewSlot()
	holder := storetest.GroupEvent(t, a, h, nostr.Now()-10)
	if _, err := s.ClaimSlot(ctx, storage.SlotClaim{H: h, Slot: slot, Commit: holder}); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockClassSlot, lockKey('s', h+":"+slot)); err != nil {
		t.Fatal(err)
	}

	loser := storetest.GroupEvent(t, a, h, nostr.Now()-9)
	replacement := storetest.GroupEvent(t, a, h, nostr.Now()-8)
	for _, c := range []struct {
		name     string
		claim    storage.SlotClaim
		lockFree bool
	}{
		{"a plain claim on a held slot is answered while the lock is held", storage.SlotClaim{H: h, Slot: slot, Commit: loser}, true},
		{"a retry of the holder waits, and gives up inside the database", storage.SlotClaim{H: h, Slot: slot, Commit: holder}, false},
		{"a release claim waits, and gives up inside the database", storage.SlotClaim{H: h, Slot: slot, Commit: replacement, Release: holder.ID}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.ClaimSlot(ctx, c.claim)
			if !c.lockFree {
				if !errors.Is(err, storage.ErrBusy) {
					t.Fatalf("ClaimSlot = %v while the slot lock is held; want ErrBusy", err)
				}
				return
			}
			var taken *storage.SlotTakenError
			if !errors.As(err, &taken) || taken.Holder != holder.ID {
				t.Fatalf("ClaimSlot = %v; want slot taken by %s", err, holder.ID)
			}
		})
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// The release reported busy did not commit once the lock was free: the
	// holder still holds the slot and the replacement was never stored.
	res, err := s.ClaimSlot(ctx, storage.SlotClaim{H: h, Slot: slot, Commit: holder})
	if err != nil || res.Stored || res.Released != "" {
		t.Fatalf("retry of the holder after the busy release = %+v, %v; want a plain retry", res, err)
	}
	for ev, err := range s.Query(ctx, nostr.Filter{IDs: []string{replacement.ID}}) {
		t.Fatalf("the release reported busy stored its replacement: %v, %v", ev, err)
	}
	// The lock-free loser was recorded: its bare Save names the holder.
	var taken *storage.SlotTakenError
	if _, err := s.Save(ctx, loser); !errors.As(err, &taken) || taken.Holder != holder.ID {
		t.Fatalf("Save of the loser = %v; want slot taken by %s", err, holder.ID)
	}
}
