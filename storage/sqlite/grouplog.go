package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// errSequencingDisabled is what the group methods answer on a Store opened
// with Config.DisableSequencing: its kind 445 events carry no seq.
var errSequencingDisabled = errors.New("sequencing is disabled (Config.DisableSequencing)")

// reasonSlotLost is the tombstone reason of a Commit that lost a slot. It
// is never reported as a deletion: nothing was stored.
const reasonSlotLost storage.Reason = "slot_lost"

// GroupLog yields the stored kind 445 events of group h with seq above
// after, in ascending seq; see storage.Store.
func (s *Store) GroupLog(ctx context.Context, h string, after int64, limit int) iter.Seq2[storage.Sequenced, error] {
	return func(yield func(storage.Sequenced, error) bool) {
		if s.isClosed.Load() {
			yield(storage.Sequenced{}, storage.ErrClosed)
			return
		}
		if s.noSeq {
			yield(storage.Sequenced{}, fmt.Errorf("sqlite: group log: %w", errSequencingDisabled))
			return
		}
		if limit <= 0 {
			limit = -1 // SQLite: no limit
		}
		from, err := s.seekGroup(ctx, h, after)
		if err != nil {
			yield(storage.Sequenced{}, s.readErr("group log", err))
			return
		}
		// CROSS JOIN keeps the tags key as the outer loop: its order is
		// the group's seq order.
		rows, err := s.readDB.QueryContext(ctx, `SELECT e.seq, EXISTS (SELECT 1 FROM released_commits r WHERE r.id = e.id),
	rb.id, rb.seq, e.id, e.pubkey, e.created_at, e.kind, e.tags, e.content, e.sig
FROM tags t CROSS JOIN events e ON e.n = t.event
	LEFT JOIN released_commits rb ON rb.released_by = e.id
WHERE t.name = 'h' AND t.value = ? AND t.event >= ? AND e.kind = 445 AND e.seq > ?
	AND (e.expires_at IS NULL OR e.expires_at > ?)
ORDER BY t.event LIMIT ?`, h, from, after, time.Now().Unix(), limit)
		if err != nil {
			yield(storage.Sequenced{}, s.readErr("group log", err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var (
				sq     storage.Sequenced
				tags   string
				relID  sql.NullString
				relSeq sql.NullInt64
			)
			ev := &nostr.Event{}
			sq.Event = ev
			if err := rows.Scan(&sq.Seq, &sq.Released, &relID, &relSeq, &ev.ID, &ev.PubKey, &ev.CreatedAt, &ev.Kind, &tags, &ev.Content, &ev.Sig); err != nil {
				yield(storage.Sequenced{}, s.readErr("scan", err))
				return
			}
			if relID.Valid {
				sq.Releases = &storage.Release{ID: relID.String, Seq: relSeq.Int64}
			}
			if err := json.Unmarshal([]byte(tags), &ev.Tags); err != nil {
				yield(storage.Sequenced{}, fmt.Errorf("sqlite: decode tags of %s: %w", ev.ID, err))
				return
			}
			if !yield(sq, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(storage.Sequenced{}, s.readErr("group log", err))
		}
	}
}

// seekGroup returns a row number at or below that of group h's first
// event with seq above after, and above every one of its events with seq up
// to after, so that a scan of the group from it starts at the cursor.
//
// It rests on one invariant: seq numbers and row numbers are both handed
// out inside the write transaction that stores an event, which SQLite's
// write lock serializes, so within a group ascending row number is
// ascending seq (a new row number is one past the largest existing one,
// even when the previous largest was deleted). A binary search over row
// numbers then finds the cursor in about log2(rows) index probes.
func (s *Store) seekGroup(ctx context.Context, h string, after int64) (int64, error) {
	if after <= 0 {
		return 0, nil
	}
	var hi int64
	if err := s.readDB.QueryRowContext(ctx, `SELECT coalesce(max(event), 0) + 1 FROM tags WHERE name = 'h' AND value = ?`, h).
		Scan(&hi); err != nil {
		return 0, err
	}
	lo := int64(0) // never past the first event with seq > after
	for lo < hi {
		mid := lo + (hi-lo)/2
		var n, seq int64
		err := s.readDB.QueryRowContext(ctx, `SELECT t.event, e.seq FROM tags t CROSS JOIN events e ON e.n = t.event
WHERE t.name = 'h' AND t.value = ? AND t.event >= ? AND e.kind = 445 AND e.seq > 0
ORDER BY t.event LIMIT 1`, h, mid).Scan(&n, &seq)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			hi = mid
		case err != nil:
			return 0, err
		case seq > after:
			hi = mid
		default:
			lo = n + 1
		}
	}
	return lo, nil
}

// LastSeq returns the last seq handed out in group h (0 if none was).
func (s *Store) LastSeq(ctx context.Context, h string) (int64, error) {
	if s.isClosed.Load() {
		return 0, storage.ErrClosed
	}
	if s.noSeq {
		return 0, fmt.Errorf("sqlite: last seq: %w", errSequencingDisabled)
	}
	var last int64
	err := s.readDB.QueryRowContext(ctx, `SELECT last_seq FROM group_seq WHERE h = ?`, h).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, s.readErr("last seq", err)
	}
	return last, nil
}

// ClaimSlot arbitrates a commit slot inside the writer's transaction, which
// SQLite's write lock makes exclusive across every process on the file; see
// storage.Store.
func (s *Store) ClaimSlot(ctx context.Context, c storage.SlotClaim) (storage.SlotResult, error) {
	if s.isClosed.Load() {
		return storage.SlotResult{}, storage.ErrClosed
	}
	if s.noSeq {
		return storage.SlotResult{}, fmt.Errorf("sqlite: claim slot: %w", errSequencingDisabled)
	}
	if c.Commit == nil || c.Commit.Kind != 445 {
		return storage.SlotResult{}, errors.New("sqlite: claim slot: the Commit must be a kind 445")
	}
	r, err := prepareRow(c.Commit, time.Now())
	if err != nil {
		return storage.SlotResult{}, err
	}
	if r.group == "" || r.group != c.H {
		return storage.SlotResult{}, fmt.Errorf("sqlite: claim slot: Commit %s does not carry exactly one h tag %q", c.Commit.ID, c.H)
	}
	var (
		out   storage.SlotResult
		taken error
	)
	err = s.write(ctx, func(tx *txn) error {
		var err error
		out, taken, err = tx.claimSlot(r, c) // each run (the writer may retry) sets both
		return err
	})
	if err != nil {
		return storage.SlotResult{}, err
	}
	if taken != nil {
		return storage.SlotResult{}, taken
	}
	return out, nil
}

// claimSlot decides a claim. A lost claim is not an error of the op, which
// must commit (it records the loser): it comes back as taken.
func (tx *txn) claimSlot(r row, c storage.SlotClaim) (out storage.SlotResult, taken error, err error) {
	now := time.Now().Unix()
	id := c.Commit.ID
	holder, holderSeq, free, err := tx.slotHolder(c.H, c.Slot)
	if err != nil {
		return out, nil, err
	}
	if holder == id {
		// A retry.
		out.Seq = holderSeq
		if c.Release != "" {
			var seq sql.NullInt64
			err := tx.tx.QueryRowContext(tx.ctx, `SELECT seq FROM released_commits WHERE id = ? AND h = ? AND slot = ?`,
				c.Release, c.H, c.Slot).Scan(&seq)
			switch {
			case err == nil:
				out.Released, out.ReleasedSeq = c.Release, seq.Int64
			case !errors.Is(err, sql.ErrNoRows):
				return storage.SlotResult{}, nil, fmt.Errorf("sqlite: read released: %w", err)
			}
		}
		return out, nil, nil
	}

	// The Commit's own past: a loser (or a released holder) never holds a
	// slot again, and a holder holds only one.
	var lostSlot string
	err = tx.tx.QueryRowContext(tx.ctx, `SELECT slot FROM commit_slot_losers WHERE id = ?1 AND h = ?2
	UNION ALL SELECT slot FROM released_commits WHERE id = ?1 AND h = ?2 LIMIT 1`, id, c.H).Scan(&lostSlot)
	switch {
	case err == nil:
		if lostSlot == c.Slot {
			return storage.SlotResult{}, fmt.Errorf("sqlite: claim %s: %w", id, &storage.SlotTakenError{Holder: holder}), nil
		}
		lostTo, _, _, err := tx.slotHolder(c.H, lostSlot)
		if err != nil {
			return storage.SlotResult{}, nil, err
		}
		return storage.SlotResult{}, fmt.Errorf("sqlite: claim %s: %w", id, &storage.CommitLostError{Slot: lostSlot, Holder: lostTo}), nil
	case !errors.Is(err, sql.ErrNoRows):
		return storage.SlotResult{}, nil, fmt.Errorf("sqlite: read the Commit's slots: %w", err)
	}
	var heldSlot string
	err = tx.tx.QueryRowContext(tx.ctx, `SELECT slot FROM commit_slots WHERE h = ? AND holder = ? LIMIT 1`, c.H, id).Scan(&heldSlot)
	switch {
	case err == nil:
		return storage.SlotResult{}, fmt.Errorf("sqlite: claim %s: %w", id, &storage.CommitHoldsError{Slot: heldSlot}), nil
	case !errors.Is(err, sql.ErrNoRows):
		return storage.SlotResult{}, nil, fmt.Errorf("sqlite: read the Commit's slots: %w", err)
	}

	switch {
	case free:
		if out, err = tx.saveCommit(r); err != nil {
			return storage.SlotResult{}, nil, err
		}
		tx.dirty = true
		if _, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO commit_slots (h, slot, holder, holder_seq, taken_at) VALUES (?, ?, ?, ?, ?)`,
			c.H, c.Slot, id, out.Seq, now); err != nil {
			return storage.SlotResult{}, nil, fmt.Errorf("sqlite: take slot: %w", err)
		}
		return out, nil, nil

	case c.Release != "" && c.Release == holder:
		if out, err = tx.saveCommit(r); err != nil {
			return storage.SlotResult{}, nil, err
		}
		tx.dirty = true
		if _, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO released_commits (id, h, slot, released_at, seq, released_by) VALUES (?, ?, ?, ?, ?, ?)
	ON CONFLICT (id) DO NOTHING`, holder, c.H, c.Slot, now, holderSeq, id); err != nil {
			return storage.SlotResult{}, nil, fmt.Errorf("sqlite: mark released: %w", err)
		}
		if _, err := tx.tx.ExecContext(tx.ctx, `UPDATE commit_slots SET holder = ?, holder_seq = ?, taken_at = ? WHERE h = ? AND slot = ?`,
			id, out.Seq, now, c.H, c.Slot); err != nil {
			return storage.SlotResult{}, nil, fmt.Errorf("sqlite: take slot: %w", err)
		}
		out.Released, out.ReleasedSeq = holder, holderSeq
		return out, nil, nil
	}

	// A loser, recorded so that it never holds a slot. One not stored is
	// tombstoned too, so that a bare Save of it fails naming the holder; an
	// id already stored stays a plain event of the log.
	var stored bool
	if err := tx.tx.QueryRowContext(tx.ctx, `SELECT EXISTS (SELECT 1 FROM events WHERE id = ?)`, id).Scan(&stored); err != nil {
		return storage.SlotResult{}, nil, fmt.Errorf("sqlite: read %s: %w", id, err)
	}
	if !stored {
		if err := tx.tombstone(id, reasonSlotLost); err != nil {
			return storage.SlotResult{}, nil, err
		}
	}
	tx.dirty = true
	if _, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO commit_slot_losers (id, h, slot, recorded_at) VALUES (?, ?, ?, ?)
	ON CONFLICT (id) DO NOTHING`, id, c.H, c.Slot, now); err != nil {
		return storage.SlotResult{}, nil, fmt.Errorf("sqlite: record loser: %w", err)
	}
	return storage.SlotResult{}, fmt.Errorf("sqlite: claim %s: %w", id, &storage.SlotTakenError{Holder: holder}), nil
}

// slotHolder reads the Commit holding slot of group h and its seq; free
// reports that nobody holds it.
func (tx *txn) slotHolder(h, slot string) (holder string, seq int64, free bool, err error) {
	err = tx.tx.QueryRowContext(tx.ctx, `SELECT holder, holder_seq FROM commit_slots WHERE h = ? AND slot = ?`, h, slot).
		Scan(&holder, &seq)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, true, nil
	}
	if err != nil {
		return "", 0, false, fmt.Errorf("sqlite: read slot: %w", err)
	}
	return holder, seq, false, nil
}

// saveCommit saves a claim's Commit with Save's rules; one already stored
// (as a bare event) counts, with its seq.
func (tx *txn) saveCommit(r row) (storage.SlotResult, error) {
	var res storage.Result
	err := tx.save(r, &res)
	switch {
	case err == nil:
		return storage.SlotResult{Result: res, Stored: true}, nil
	case errors.Is(err, storage.ErrDuplicate):
		return storage.SlotResult{Result: storage.Result{Seq: res.Seq}}, nil
	}
	return storage.SlotResult{}, err
}

// lostSlot fails with the *storage.SlotTakenError of a Commit recorded as
// having lost a slot, naming the slot's current holder; nil if id lost none
// (or its slot record is gone).
func (tx *txn) lostSlot(id string) error {
	var holder string
	err := tx.st.loserHolder.QueryRowContext(tx.ctx, id).Scan(&holder)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("sqlite: read slot of %s: %w", id, err)
	}
	return fmt.Errorf("sqlite: %s lost its slot: %w", id, &storage.SlotTakenError{Holder: holder})
}

// DeleteGroupEvents removes every kind 445 created before before, in
// chunks, tombstoning their ids, then the slot records older than before.
// group_seq is left alone, so numbers are never reused.
func (s *Store) DeleteGroupEvents(ctx context.Context, before time.Time) ([]storage.Deletion, error) {
	if s.isClosed.Load() {
		return nil, storage.ErrClosed
	}
	all, err := s.deleteInChunks(ctx, func(st *statements) *rawStmt { return st.oldGroup }, before.Unix(), storage.ReasonRetention, "old group events")
	if err != nil {
		return all, err
	}
	err = s.write(ctx, func(tx *txn) error {
		tx.dirty = true
		for _, q := range []string{
			`DELETE FROM commit_slots WHERE taken_at < ?`,
			`DELETE FROM commit_slot_losers WHERE recorded_at < ?`,
			`DELETE FROM released_commits WHERE released_at < ?`,
		} {
			if _, err := tx.tx.ExecContext(tx.ctx, q, before.Unix()); err != nil {
				return fmt.Errorf("sqlite: delete slot records: %w", err)
			}
		}
		return nil
	})
	return all, err
}
