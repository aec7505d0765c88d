package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/jackc/pgx/v5"
)

// errSequencingDisabled is what the group methods answer on a Store opened
// with Config.DisableSequencing: its kind 445 events carry no seq.
var errSequencingDisabled = errors.New("sequencing is disabled (Config.DisableSequencing)")

// reasonSlotLost is the tombstone reason of a Commit that lost a slot. It
// is never reported as a deletion: nothing was stored.
const reasonSlotLost storage.Reason = "slot_lost"

// GroupLog yields the stored kind 445 events of group h whose seq is above
// after, in ascending seq, at most limit of them (limit <= 0: no cap),
// skipping expired ones, each flagged if it is a released slot holder; see
// storage.Store.
func (s *Store) GroupLog(ctx context.Context, h string, after int64, limit int) iter.Seq2[storage.Sequenced, error] {
	return func(yield func(storage.Sequenced, error) bool) {
		if s.isClosed() {
			yield(storage.Sequenced{}, storage.ErrClosed)
			return
		}
		if s.noSeq {
			yield(storage.Sequenced{}, fmt.Errorf("postgres group log: %w", errSequencingDisabled))
			return
		}
		sql := `SELECT seq, EXISTS (SELECT 1 FROM released_commits r WHERE r.id = events.id), ` + eventColumns + ` FROM events
			WHERE h = $1 AND seq > $2 AND (expires_at IS NULL OR expires_at > $3)
			ORDER BY seq`
		args := []any{[]byte(h), after, s.now().Unix()}
		if limit > 0 {
			sql += ` LIMIT $4`
			args = append(args, int64(limit))
		}
		rows, err := s.pool.Query(ctx, sql, args...)
		if err != nil {
			yield(storage.Sequenced{}, fmt.Errorf("postgres group log: %w", err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var sq storage.Sequenced
			ev, err := scanEventWith(rows, &sq.Seq, &sq.Released)
			if err != nil {
				yield(storage.Sequenced{}, err)
				return
			}
			sq.Event = ev
			if !yield(sq, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(storage.Sequenced{}, fmt.Errorf("postgres group log: %w", err))
		}
	}
}

// LastSeq returns the last seq assigned in group h (0 if none was).
func (s *Store) LastSeq(ctx context.Context, h string) (int64, error) {
	if s.isClosed() {
		return 0, storage.ErrClosed
	}
	if s.noSeq {
		return 0, fmt.Errorf("postgres last seq: %w", errSequencingDisabled)
	}
	var last int64
	err := s.pool.QueryRow(ctx, `SELECT last_seq FROM group_seqs WHERE h = $1`, []byte(h)).Scan(&last)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("postgres last seq: %w", err)
	}
	return last, nil
}

// ClaimSlot arbitrates a commit slot in one transaction that holds an
// advisory lock on (c.H, c.Slot) from its first read to its commit, so every
// instance sharing the database decides claims on one slot one at a time;
// see storage.Store.
func (s *Store) ClaimSlot(ctx context.Context, c storage.SlotClaim) (storage.SlotResult, error) {
	if s.isClosed() {
		return storage.SlotResult{}, storage.ErrClosed
	}
	if s.noSeq {
		return storage.SlotResult{}, fmt.Errorf("postgres claim slot: %w", errSequencingDisabled)
	}
	if c.Commit == nil || c.Commit.Kind != 445 {
		return storage.SlotResult{}, errors.New("postgres claim slot: the Commit must be a kind 445")
	}
	slot, ok := decodeHex32(c.Slot)
	if !ok {
		return storage.SlotResult{}, fmt.Errorf("postgres claim slot: slot %q is not 64 lowercase hex characters", c.Slot)
	}
	var release []byte
	if c.Release != "" {
		if release, ok = decodeHex32(c.Release); !ok {
			return storage.SlotResult{}, fmt.Errorf("postgres claim slot: release %q is not 64 lowercase hex characters", c.Release)
		}
	}
	now := s.now()
	args, err := newSaveArgs(c.Commit, nil, now)
	if err != nil {
		return storage.SlotResult{}, fmt.Errorf("postgres claim slot: %w", err)
	}
	if args.h == nil || string(args.h) != c.H {
		return storage.SlotResult{}, fmt.Errorf("postgres claim slot: Commit %s does not carry exactly one h tag %q", c.Commit.ID, c.H)
	}
	if args.expiresAt != nil && *args.expiresAt <= now.Unix() {
		return storage.SlotResult{}, fmt.Errorf("save %s: expires at %d: %w", c.Commit.ID, *args.expiresAt, storage.ErrExpired)
	}
	cl := claim{c: c, args: args, slot: slot, release: release, now: now.Unix()}

	var (
		out   storage.SlotResult
		taken error
	)
	for try := 1; ; try++ {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var err error
			out, taken, err = cl.run(ctx, tx)
			return err
		})
		if err == nil || ctx.Err() != nil || !retryable(err) || try >= 5 {
			break
		}
		time.Sleep(time.Duration(try) * 10 * time.Millisecond)
	}
	if err != nil {
		return storage.SlotResult{}, fmt.Errorf("postgres claim slot: %w", err)
	}
	if taken != nil {
		return storage.SlotResult{}, taken
	}
	return out, nil
}

// claim is one ClaimSlot call, taken apart.
type claim struct {
	c             storage.SlotClaim
	args          *saveArgs
	slot, release []byte
	now           int64
}

// run decides the claim in tx. A lost claim commits (it records the loser),
// so it comes back as taken, not as an error.
func (cl claim) run(ctx context.Context, tx pgx.Tx) (out storage.SlotResult, taken error, err error) {
	h, id := cl.args.h, cl.args.id
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockClassSlot, lockKey('s', cl.c.H+":"+cl.c.Slot)); err != nil {
		return out, nil, err
	}
	var (
		holder    []byte
		holderSeq int64
	)
	err = tx.QueryRow(ctx, `SELECT holder, holder_seq FROM commit_slots WHERE h = $1 AND slot = $2`, h, cl.slot).
		Scan(&holder, &holderSeq)
	free := errors.Is(err, pgx.ErrNoRows)
	if err != nil && !free {
		return out, nil, err
	}
	switch {
	case free:
		if out, err = cl.save(ctx, tx); err != nil {
			return storage.SlotResult{}, nil, err
		}
		_, err = tx.Exec(ctx, `INSERT INTO commit_slots (h, slot, holder, holder_seq, taken_at) VALUES ($1, $2, $3, $4, $5)`,
			h, cl.slot, id, out.Seq, cl.now)
		return out, nil, err

	case string(holder) == string(id):
		out.Seq = holderSeq
		if cl.release != nil {
			var released bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM released_commits WHERE id = $1 AND h = $2 AND slot = $3)`,
				cl.release, h, cl.slot).Scan(&released); err != nil {
				return storage.SlotResult{}, nil, err
			}
			if released {
				out.Released = cl.c.Release
			}
		}
		return out, nil, nil

	case cl.release != nil && string(cl.release) == string(holder):
		if out, err = cl.save(ctx, tx); err != nil {
			return storage.SlotResult{}, nil, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO released_commits (id, h, slot, released_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (id) DO NOTHING`, holder, h, cl.slot, cl.now); err != nil {
			return storage.SlotResult{}, nil, err
		}
		if _, err := tx.Exec(ctx, `UPDATE commit_slots SET holder = $3, holder_seq = $4, taken_at = $5 WHERE h = $1 AND slot = $2`,
			h, cl.slot, id, out.Seq, cl.now); err != nil {
			return storage.SlotResult{}, nil, err
		}
		out.Released = cl.c.Release
		return out, nil, nil
	}

	// A loser: tombstoned so that burrow_save refuses a bare re-send, and
	// recorded so that the refusal names the holder. An id already stored
	// stays as it is.
	_, err = tx.Exec(ctx, `WITH t AS (
			INSERT INTO tombstones (id, reason) SELECT $1, $5 WHERE NOT EXISTS (SELECT 1 FROM events WHERE id = $1)
			ON CONFLICT DO NOTHING)
		INSERT INTO commit_slot_losers (id, h, slot, recorded_at)
		SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM events WHERE id = $1)
		ON CONFLICT (id) DO NOTHING`, id, h, cl.slot, cl.now, string(reasonSlotLost))
	if err != nil {
		return storage.SlotResult{}, nil, err
	}
	return storage.SlotResult{}, fmt.Errorf("claim %s: %w", cl.c.Commit.ID, &storage.SlotTakenError{Holder: hex.EncodeToString(holder)}), nil
}

// save saves the claim's Commit with Save's rules in tx; one already stored
// (as a bare event) counts, with its seq.
func (cl claim) save(ctx context.Context, tx pgx.Tx) (storage.SlotResult, error) {
	resp, err := scanSave(tx.QueryRow(ctx, saveSQL, cl.args.values()...))
	if err != nil {
		return storage.SlotResult{}, err
	}
	switch resp.status {
	case statusStored:
		return storage.SlotResult{Result: resp.res, Stored: true}, nil
	case statusDuplicate:
		return storage.SlotResult{Result: storage.Result{Seq: resp.res.Seq}}, nil
	}
	return storage.SlotResult{}, statusErr(ctx, tx, cl.c.Commit, cl.args.id, resp.status)
}

// DeleteGroupEvents removes every kind 445 created before before,
// tombstoning their ids, and the slot records older than before, in one
// transaction. group_seqs is left alone, so numbers are never reused.
func (s *Store) DeleteGroupEvents(ctx context.Context, before time.Time) ([]storage.Deletion, error) {
	if s.isClosed() {
		return nil, storage.ErrClosed
	}
	var out []storage.Deletion
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		out, err = deleteWhere(ctx, tx, `kind = 445 AND created_at < $1`, storage.ReasonRetention, before.Unix())
		if err != nil {
			return err
		}
		if len(out) > 0 {
			raw := make([][]byte, len(out))
			for i, d := range out {
				raw[i], _ = hex.DecodeString(d.ID)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO tombstones (id, reason) SELECT x, $2 FROM unnest($1::bytea[]) AS x ON CONFLICT DO NOTHING`,
				raw, string(storage.ReasonRetention)); err != nil {
				return err
			}
		}
		for _, q := range []string{
			`DELETE FROM commit_slots WHERE taken_at < $1`,
			`DELETE FROM commit_slot_losers WHERE recorded_at < $1`,
			`DELETE FROM released_commits WHERE released_at < $1`,
		} {
			if _, err := tx.Exec(ctx, q, before.Unix()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres delete group events: %w", err)
	}
	return out, nil
}
