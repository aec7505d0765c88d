package postgres

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/burrow-relay/burrow/storage"
	"github.com/jackc/pgx/v5"
)

// Ban deletes and tombstones every stored event of pubkey and refuses its
// later events; see storage.Store.
func (s *Store) Ban(ctx context.Context, pubkey string) ([]storage.Deletion, error) {
	if s.isClosed() {
		return nil, storage.ErrClosed
	}
	raw, ok := decodeHex32(pubkey)
	if !ok {
		return nil, fmt.Errorf("ban: pubkey %q is not 64 lowercase hex characters", pubkey)
	}
	var out []storage.Deletion
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Exclusive on the author: every save of this author holds it
		// shared, so none can slip in between the ban and the deletion.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockClassEvent, lockKey('p', pubkey)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO banned_pubkeys (pubkey) VALUES ($1) ON CONFLICT DO NOTHING`, raw); err != nil {
			return err
		}
		var err error
		out, err = deleteWhere(ctx, tx, `pubkey = $1`, storage.ReasonBanned, raw)
		if err != nil || len(out) == 0 {
			return err
		}
		gone := make([][]byte, len(out))
		for i, d := range out {
			gone[i], _ = hex.DecodeString(d.ID)
		}
		_, err = tx.Exec(ctx, `INSERT INTO tombstones (id, reason) SELECT x, $2 FROM unnest($1::bytea[]) AS x ON CONFLICT DO NOTHING`,
			gone, string(storage.ReasonBanned))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres ban: %w", err)
	}
	s.keyPackagesDeleted(out)
	return out, nil
}

// BannedPubKeys lists the banned pubkeys in ascending order.
func (s *Store) BannedPubKeys(ctx context.Context) ([]string, error) {
	if s.isClosed() {
		return nil, storage.ErrClosed
	}
	rows, err := s.pool.Query(ctx, `SELECT pubkey FROM banned_pubkeys ORDER BY pubkey`)
	if err != nil {
		return nil, fmt.Errorf("postgres banned pubkeys: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var pk []byte
		err := r.Scan(&pk)
		return hex.EncodeToString(pk), err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres banned pubkeys: %w", err)
	}
	return out, nil
}
