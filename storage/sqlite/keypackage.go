package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// SaveKeyPackage stores a kind 443 or 30443 event with Save's rules plus
// kp's: its twins (the author's other KeyPackage events with the same Ref)
// are deleted, it expires at the earlier of its NIP-40 expiration and
// kp.NotAfter, and a new 30443 slot respects kp.SlotCap. All of it happens in
// the writer's transaction that stores the event.
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

// evictions returns the slots that saving r, a 30443 opening a new slot,
// must evict to stay within r.kp.SlotCap: the author's least recently
// refreshed live slots, as many as needed to leave room for one more. It
// fails with storage.ErrSlotCap if any of them is not older than
// r.kp.EvictAfter. Expired slots (no longer served, awaiting DeleteExpired)
// and twins of r (which this save deletes anyway) do not count.
func (tx *txn) evictions(r row, now time.Time) ([]stored, error) {
	rows, err := tx.st.slots.QueryContext(tx.ctx, r.ev.PubKey, now.Unix())
	if err != nil {
		return nil, fmt.Errorf("sqlite: read slots: %w", err)
	}
	var live []stored
	for rows.Next() {
		var (
			e   stored
			ref sql.NullString
		)
		if err := rows.Scan(&e.n, &e.id, &e.kind, &e.pubkey, &e.createdAt, &e.tags, &ref); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: read slots: %w", err)
		}
		if r.kpRef.Valid && ref.Valid && ref.String == r.kpRef.String {
			continue
		}
		live = append(live, e)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: read slots: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read slots: %w", err)
	}
	need := len(live) - r.kp.SlotCap + 1
	if need <= 0 {
		return nil, nil
	}
	cutoff := now.Add(-r.kp.EvictAfter).Unix()
	for _, e := range live[:need] {
		if e.createdAt >= cutoff {
			return nil, fmt.Errorf("sqlite: %s would be slot %d of %d and the oldest slot was refreshed at %d: %w",
				r.ev.ID, len(live)+1, r.kp.SlotCap, live[0].createdAt, storage.ErrSlotCap)
		}
	}
	return live[:need], nil
}
