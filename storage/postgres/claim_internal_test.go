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

	_, tx := holdLock(t, pg.URL, lockClassSlot, lockKey('s', h+":"+slot))

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

// TestClaimContendersShareOneCommit holds the group's writer on a save
// waiting for a lock, queues eight claims on one slot behind it, and lets
// it go: the eight are decided in one transaction of the group commit (the
// winner's slot row and the seven losers' records carry one xmin), one
// Commit holds the slot and the other seven are told it is taken by that
// one. Claims used to commit one by one, each waiting for the previous
// contender's flush.
func TestClaimContendersShareOneCommit(t *testing.T) {
	pg := testsvc.Postgres(t)
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: pg.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	const h = "g"
	conn, tx, blocked := blockWriter(t, s, pg.URL, storetest.GroupEvent(t, storetest.NewAuthor(t), h, nostr.Now()))

	const contenders = 8
	a := storetest.NewAuthor(t)
	slot := storetest.NewSlot()
	commits := make([]*nostr.Event, contenders)
	type outcome struct {
		id  string
		res storage.SlotResult
		err error
	}
	outcomes := make(chan outcome, contenders)
	for i := range commits {
		commits[i] = storetest.GroupEvent(t, a, h, nostr.Now()-nostr.Timestamp(i))
		go func(ev *nostr.Event) {
			res, err := s.ClaimSlot(ctx, storage.SlotClaim{H: h, Slot: slot, Commit: ev})
			outcomes <- outcome{ev.ID, res, err}
		}(commits[i])
	}
	queue := s.queues[uint32(lockKey('h', h))%uint32(len(s.queues))]
	waitFor(t, "the claims to queue behind the save", func() bool { return len(queue) == contenders })
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}

	var (
		winner          string
		losers, holders []string
	)
	for range contenders {
		o := <-outcomes
		if o.err == nil && o.res.Stored {
			if winner != "" {
				t.Fatalf("two Commits hold the slot: %s and %s", winner, o.id)
			}
			winner = o.id
			continue
		}
		losers = append(losers, o.id)
		var taken *storage.SlotTakenError
		if !errors.As(o.err, &taken) {
			t.Fatalf("claim of %s = %+v, %v; want the slot taken", o.id, o.res, o.err)
		}
		holders = append(holders, taken.Holder)
	}
	if winner == "" {
		t.Fatal("no Commit holds the slot")
	}
	for _, got := range holders {
		if got != winner {
			t.Errorf("a loser was told the slot is held by %s; the holder is %s", got, winner)
		}
	}
	var xmins int
	if err := conn.QueryRow(ctx, `SELECT count(DISTINCT x) FROM (
		SELECT xmin::text AS x FROM commit_slots WHERE holder = decode($1, 'hex')
		UNION ALL SELECT xmin::text FROM commit_slot_losers WHERE encode(id, 'hex') = ANY($2)) r`,
		winner, losers).Scan(&xmins); err != nil {
		t.Fatal(err)
	}
	if xmins != 1 {
		t.Fatalf("the %d contenders were decided in %d transactions; want 1", contenders, xmins)
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// bound; it waits for a state, so no outcome depends on how long that takes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// blockWriter saves ev while another connection holds its author's lock
// (saves take it shared), so the writer of ev's route waits inside
// PostgreSQL until the test ends tx, and what is queued meanwhile forms
// its next group. blocked receives the save's error.
func blockWriter(t *testing.T, s *Store, url string, ev *nostr.Event) (*pgx.Conn, pgx.Tx, <-chan error) {
	t.Helper()
	ctx := context.Background()
	conn, tx := holdLock(t, url, lockClassEvent, lockKey('p', ev.PubKey))
	blocked := make(chan error, 1)
	go func() {
		_, err := s.Save(ctx, ev)
		blocked <- err
	}()
	waitFor(t, "the save to wait for the author's lock", func() bool {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&n)
		return err == nil && n == 1
	})
	return conn, tx, blocked
}

// holdLock takes an advisory lock exclusively in a transaction of its own
// connection, as another instance's claim or deletion would, until the
// test commits or rolls back tx (or ends).
func holdLock(t *testing.T, url string, class, key int32) (*pgx.Conn, pgx.Tx) {
	t.Helper()
	return holdTx(t, url, `SELECT pg_advisory_xact_lock($1, $2)`, class, key)
}

// holdTx runs sql in a transaction of its own connection and keeps it
// open, holding the locks sql took as another instance's transaction
// would, until the test commits or rolls back tx (or ends).
func holdTx(t *testing.T, url, sql string, args ...any) (*pgx.Conn, pgx.Tx) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		t.Fatal(err)
	}
	return conn, tx
}
