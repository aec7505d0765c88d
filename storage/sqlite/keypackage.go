package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// SaveKeyPackage stores a kind 443 or 30443 event with Save's rules plus
// kp's: a deleted KeyPackage (tombstoned Ref) is refused, it expires at the
// earlier of its NIP-40 expiration and kp.NotAfter, and a new KeyPackage
// respects kp.SlotCap. Twins coexist (see storage.KeyPackage). All of it
// happens in the writer's transaction that stores the event.
func (s *Store) SaveKeyPackage(ctx context.Context, ev *nostr.Event, kp storage.KeyPackage) (storage.Result, error) {
	if ev.Kind != 443 && ev.Kind != 30443 {
		return storage.Result{}, fmt.Errorf("sqlite: SaveKeyPackage takes kinds 443 and 30443, not %d", ev.Kind)
	}
	now := time.Now()
	r, err := prepareRow(ev, now)
	if err != nil {
		return storage.Result{}, err
	}
	if !kp.NotAfter.IsZero() {
		// Whole seconds, rounded down: the stored expiry is never later
		// than NotAfter.
		notAfter := kp.NotAfter.Unix()
		if notAfter <= now.Unix() {
			return storage.Result{}, fmt.Errorf("sqlite: KeyPackage not_after %d is not after now: %w", notAfter, storage.ErrExpired)
		}
		if !r.expiresAt.Valid || notAfter < r.expiresAt.Int64 {
			r.expiresAt = sql.NullInt64{Int64: notAfter, Valid: true}
		}
	}
	if kp.Ref != "" {
		r.kpRef = sql.NullString{String: kp.Ref, Valid: true}
	}
	r.kp = &kp
	return s.saveRow(ctx, r)
}

// evictions returns the events that saving r must remove to keep its
// author within r.kp.SlotCap KeyPackages (see storage.KeyPackage): for each
// of the least recently refreshed KeyPackages, as many as it takes to leave
// room for one more, its newest event (its twins follow in buryTwins). It
// returns nothing when r's KeyPackage is already live (a twin adds none),
// and fails with storage.ErrSlotCap if any KeyPackage to evict was
// refreshed within r.kp.EvictAfter. Expired events (no longer served,
// awaiting DeleteExpired) do not count.
func (tx *txn) evictions(r row, now time.Time) ([]stored, error) {
	evs, err := tx.collect(tx.st.authorKPs, r.ev.PubKey, now.Unix())
	if err != nil {
		return nil, fmt.Errorf("sqlite: read the author's KeyPackages: %w", err)
	}
	// One unit per KeyPackage, keyed by its ref (an event without one is a
	// KeyPackage of its own), represented by its newest event.
	newest := make(map[string]stored, len(evs))
	for _, e := range evs {
		key := "id:" + e.id
		if e.kpRef.Valid {
			if r.kpRef.Valid && e.kpRef.String == r.kpRef.String {
				return nil, nil // a twin: no new KeyPackage
			}
			key = "ref:" + e.kpRef.String
		}
		if cur, ok := newest[key]; !ok || newerEvent(e, cur) {
			newest[key] = e
		}
	}
	need := len(newest) - r.kp.SlotCap + 1
	if need <= 0 {
		return nil, nil
	}
	units := slices.Collect(maps.Values(newest))
	slices.SortFunc(units, func(a, b stored) int {
		if newerEvent(b, a) {
			return -1
		}
		if newerEvent(a, b) {
			return 1
		}
		return 0
	})
	cutoff := now.Add(-r.kp.EvictAfter).Unix()
	for _, e := range units[:need] {
		if e.createdAt >= cutoff {
			return nil, fmt.Errorf("sqlite: %s would be KeyPackage %d of %d and the least recently refreshed was refreshed at %d: %w",
				r.ev.ID, len(units)+1, r.kp.SlotCap, units[0].createdAt, storage.ErrSlotCap)
		}
	}
	return units[:need], nil
}

// newerEvent reports whether a is more recent than b: a later created_at,
// or the same and a lower id (NIP-01's tie rule).
func newerEvent(a, b stored) bool {
	return a.createdAt > b.createdAt || (a.createdAt == b.createdAt && a.id < b.id)
}
