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
		sql := `SELECT seq, EXISTS (SELECT 1 FROM released_commits r WHERE r.id = events.id),
			(SELECT r.id FROM released_commits r WHERE r.released_by = events.id),
			(SELECT r.seq FROM released_commits r WHERE r.released_by = events.id), ` + eventColumns + ` FROM events
			WHERE h = $1 AND seq > $2 AND (expires_at IS NULL OR expires_at > $3)
			ORDER BY events.seq`
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
			var (
				sq     storage.Sequenced
				relID  []byte
				relSeq *int64
			)
			ev, err := scanEventWith(rows, &sq.Seq, &sq.Released, &relID, &relSeq)
			if err != nil {
				yield(storage.Sequenced{}, err)
				return
			}
			sq.Event = ev
			if relID != nil {
				sq.Releases = &storage.Release{ID: hex.EncodeToString(relID)}
				if relSeq != nil {
					sq.Releases.Seq = *relSeq
				}
			}
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

// claimSQL calls burrow_claim_slot (migration 4): the claim's own arguments,
// then burrow_save's.
const claimSQL = `SELECT o_status, o_seq, o_holder, o_released, o_released_seq, o_slot, o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons
FROM burrow_claim_slot($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
	$21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32)`

// burrow_claim_slot status codes beyond burrow_save's.
const (
	statusClaimRetry = 7  // the Commit already holds the slot
	statusClaimTaken = 8  // another Commit holds it; this one lost
	statusClaimLost  = 9  // the Commit lost another slot before
	statusClaimHolds = 10 // the Commit holds another slot
)

// claimCall is what a queued claim adds to a save (saveReq.claim): the
// arguments of burrow_claim_slot (its own, then burrow_save's), and its
// extra result columns, filled by the writer before it answers.
type claimCall struct {
	values                  []any
	holder, released, other []byte
	releasedSeq             *int64
}

// ClaimSlot arbitrates a commit slot in one statement, burrow_claim_slot,
// which holds an advisory lock on (c.H, c.Slot) from its first read to its
// commit, so every instance sharing the database decides claims on one slot
// one at a time (a plain claim that loses to a committed holder is answered
// without that lock); see storage.Store. The statement runs in the group
// commit of the writer that saves the group's events: the contenders for a
// slot, usually queued together, are then decided in one transaction with
// one flush, the loser seeing the winner's row, instead of each waiting for
// the last one's commit (retries after a deadlock or a slot freed mid-claim
// are the writer's, as for saves).
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
	call := &claimCall{values: append([]any{slot, release, lockKey('s', c.H+":"+c.Slot), lockKey('e', c.Commit.ID), now.Unix(), string(reasonSlotLost)},
		args.values()...)}
	resp := s.queue(ctx, &saveReq{ctx: ctx, id: c.Commit.ID, args: args, claim: call})
	if resp.err != nil {
		return storage.SlotResult{}, fmt.Errorf("postgres claim slot: %w", busy(resp.err))
	}
	holder, released, releasedSeq, other := call.holder, call.released, call.releasedSeq, call.other
	out := storage.SlotResult{Result: resp.res}
	if released != nil {
		out.Released = hex.EncodeToString(released)
		if releasedSeq != nil {
			out.ReleasedSeq = *releasedSeq
		}
	}
	switch resp.status {
	case statusStored:
		out.Stored = true
		return out, nil
	case statusDuplicate, statusClaimRetry:
		return out, nil
	case statusClaimTaken:
		return storage.SlotResult{}, fmt.Errorf("claim %s: %w", c.Commit.ID, &storage.SlotTakenError{Holder: hex.EncodeToString(holder)})
	case statusClaimLost:
		return storage.SlotResult{}, fmt.Errorf("claim %s: %w", c.Commit.ID,
			&storage.CommitLostError{Slot: hex.EncodeToString(other), Holder: hex.EncodeToString(holder)})
	case statusClaimHolds:
		return storage.SlotResult{}, fmt.Errorf("claim %s: %w", c.Commit.ID, &storage.CommitHoldsError{Slot: hex.EncodeToString(other)})
	case statusDeleted:
		if holder != nil {
			return storage.SlotResult{}, fmt.Errorf("postgres claim slot: save %s: %w", c.Commit.ID, &storage.SlotTakenError{Holder: hex.EncodeToString(holder)})
		}
		return storage.SlotResult{}, fmt.Errorf("postgres claim slot: save %s: %w", c.Commit.ID, storage.ErrDeleted)
	}
	return storage.SlotResult{}, fmt.Errorf("postgres claim slot: %w", s.statusErr(ctx, c.Commit, args.id, resp.status))
}

// DeleteGroupEvents removes every kind 445 created before before,
// tombstoning their ids, and the slot records older than before, in one
// transaction. group_seqs is left alone, so numbers are never reused.
func (s *Store) DeleteGroupEvents(ctx context.Context, before time.Time) ([]storage.Deletion, error) {
	if s.isClosed() {
		return nil, storage.ErrClosed
	}
	ctx, err := writeContext(ctx)
	if err != nil {
		return nil, err
	}
	var out []storage.Deletion
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		out, err = deleteWhere(ctx, tx, `kind = 445 AND created_at < $1`, storage.ReasonRetention, 0, before.Unix())
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
		return nil, fmt.Errorf("postgres delete group events: %w", busy(err))
	}
	return out, nil
}
