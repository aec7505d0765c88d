package postgres

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/jackc/pgx/v5"
)

// Delete removes the events with these ids and tombstones every id; see
// storage.Store.
func (s *Store) Delete(ctx context.Context, ids []string, reason storage.Reason) ([]storage.Deletion, error) {
	if s.isClosed() {
		return nil, storage.ErrClosed
	}
	if len(ids) == 0 {
		return nil, nil
	}
	raw := make([][]byte, 0, len(ids))
	keys := make([]int32, 0, len(ids))
	for _, id := range ids {
		b, ok := decodeHex32(id)
		if !ok {
			return nil, fmt.Errorf("delete: id %q is not 64 lowercase hex characters", id)
		}
		raw = append(raw, b)
		keys = append(keys, lockKey('e', id))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)

	var out []storage.Deletion
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out = out[:0]
		// The same locks a save of these ids takes (shared) and a kind 5
		// naming them takes (exclusive), in the same sorted order.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::integer[]) AS k ORDER BY k`,
			lockClassEvent, keys); err != nil {
			return err
		}
		var err error
		out, err = deleteWhere(ctx, tx, `id = ANY($1)`, reason, raw)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO tombstones (id, reason) SELECT x, $2 FROM unnest($1::bytea[]) AS x ON CONFLICT DO NOTHING`,
			raw, string(reason))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres delete: %w", err)
	}
	s.keyPackagesDeleted(out)
	return out, nil
}

// DeleteExpired removes every event whose NIP-40 expiration is at or before
// now, tombstoning their ids.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) ([]storage.Deletion, error) {
	if s.isClosed() {
		return nil, storage.ErrClosed
	}
	var out []storage.Deletion
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		out, err = deleteWhere(ctx, tx, `expires_at <= $1`, storage.ReasonExpired, now.Unix())
		if err != nil || len(out) == 0 {
			return err
		}
		raw := make([][]byte, len(out))
		for i, d := range out {
			raw[i], _ = hex.DecodeString(d.ID)
		}
		_, err = tx.Exec(ctx, `INSERT INTO tombstones (id, reason) SELECT x, $2 FROM unnest($1::bytea[]) AS x ON CONFLICT DO NOTHING`,
			raw, string(storage.ReasonExpired))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres delete expired: %w", err)
	}
	s.keyPackagesDeleted(out)
	return out, nil
}

// deleteWhere deletes the events matching cond (with $1 = arg), from the
// events table and the KeyPackage table, and their tag rows, and returns
// them as deletions with reason.
func deleteWhere(ctx context.Context, tx pgx.Tx, cond string, reason storage.Reason, arg any) ([]storage.Deletion, error) {
	rows, err := tx.Query(ctx, `WITH d AS (DELETE FROM events WHERE `+cond+` RETURNING id, kind, pubkey),
		k AS (DELETE FROM keypackages WHERE `+cond+` RETURNING id, kind, pubkey)
		SELECT id, kind, pubkey FROM d UNION ALL SELECT id, kind, pubkey FROM k`, arg)
	if err != nil {
		return nil, err
	}
	var (
		out  []storage.Deletion
		gone [][]byte
	)
	for rows.Next() {
		var (
			id, pubkey []byte
			kind       int32
		)
		if err := rows.Scan(&id, &kind, &pubkey); err != nil {
			rows.Close()
			return nil, err
		}
		gone = append(gone, id)
		out = append(out, storage.Deletion{
			ID: hex.EncodeToString(id), Kind: int(kind), PubKey: hex.EncodeToString(pubkey), Reason: reason,
		})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(gone) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM event_tags WHERE event_id = ANY($1)`, gone); err != nil {
			return nil, err
		}
	}
	return out, nil
}
