package postgres

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/burrow-relay/burrow/storage"
	"github.com/jackc/pgx/v5"
)

// Ban records pubkey as banned, so its later events are refused, then
// deletes and tombstones every stored event of it in chunks (one
// transaction each, see deleteInChunks); see storage.Store. The ban is
// committed with the first chunk, so no event of the author is stored
// after it; banning again finishes a ban a crash interrupted.
func (s *Store) Ban(ctx context.Context, pubkey string) ([]storage.Deletion, error) {
	if s.isClosed() {
		return nil, storage.ErrClosed
	}
	raw, ok := decodeHex32(pubkey)
	if !ok {
		return nil, fmt.Errorf("ban: pubkey %q is not 64 lowercase hex characters", pubkey)
	}
	// Exclusive on the author: every save of this author holds it shared,
	// so none can slip in between the ban and a chunk.
	lock := lockAuthor(pubkey)
	out, err := s.deleteInChunks(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if err := lock(ctx, tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO banned_pubkeys (pubkey) VALUES ($1) ON CONFLICT DO NOTHING`, raw)
		return err
	}, `pubkey = $1`, storage.ReasonBanned, raw)
	if err != nil {
		return out, fmt.Errorf("postgres ban: %w", err)
	}
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
