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
// committed holder. A retry and a release still wait for the lock, and the
// loser is recorded as if the lock had been taken.
func TestClaimSlotLockFreeLoser(t *testing.T) {
	pg := testsvc.Postgres(t)
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: pg.URL})
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
	for _, c := range []struct {
		name     string
		claim    storage.SlotClaim
		lockFree bool
	}{
		{"a plain claim on a held slot is answered while the lock is held", storage.SlotClaim{H: h, Slot: slot, Commit: loser}, true},
		{"a retry of the holder waits", storage.SlotClaim{H: h, Slot: slot, Commit: holder}, false},
		{"a release claim waits", storage.SlotClaim{H: h, Slot: slot, Commit: storetest.GroupEvent(t, a, h, nostr.Now()-8), Release: holder.ID}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := s.ClaimSlot(cctx, c.claim)
			if !c.lockFree {
				if !errors.Is(err, context.DeadlineExceeded) && cctx.Err() == nil {
					t.Fatalf("ClaimSlot = %v while the slot lock is held; want it to wait", err)
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

	// The lock-free loser was recorded: its bare Save names the holder.
	var taken *storage.SlotTakenError
	if _, err := s.Save(ctx, loser); !errors.As(err, &taken) || taken.Holder != holder.ID {
		t.Fatalf("Save of the loser = %v; want slot taken by %s", err, holder.ID)
	}
}
