package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// vanish applies the NIP-62 request req: it deletes every event of req's
// author and every kind 1059 whose "p" tag names the author, created at or
// before req, and tombstones them. Later events of the author dated at or
// before req are refused by the check in save, as long as req is stored.
func (tx *txn) vanish(req *nostr.Event, deleted *[]storage.Deletion) error {
	own, err := tx.collect(tx.st.vanishOwn, req.PubKey, int64(req.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: find the author's events: %w", err)
	}
	wraps, err := tx.collect(tx.st.vanishWraps, req.PubKey, int64(req.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: find gift wraps to the author: %w", err)
	}
	seen := make(map[int64]bool, len(own)+len(wraps))
	for _, e := range append(own, wraps...) {
		if seen[e.n] { // a gift wrap the author addressed to itself
			continue
		}
		seen[e.n] = true
		if err := tx.remove(e, storage.ReasonVanish, deleted); err != nil {
			return err
		}
	}
	return nil
}

// Ban records pubkey as banned, so its events are refused with
// storage.ErrBanned, and deletes and tombstones every event it has stored,
// in one write.
func (s *Store) Ban(ctx context.Context, pubkey string) ([]storage.Deletion, error) {
	if s.isClosed.Load() {
		return nil, storage.ErrClosed
	}
	if !nostr.IsValid32ByteHex(pubkey) {
		return nil, fmt.Errorf("sqlite: ban: %q is not a lowercase hex public key", pubkey)
	}
	var deleted []storage.Deletion
	err := s.write(ctx, func(tx *txn) error {
		deleted = nil // the writer may run an op twice
		if _, err := tx.exec(tx.st.ban, pubkey, time.Now().Unix()); err != nil {
			return fmt.Errorf("sqlite: ban: %w", err)
		}
		evs, err := tx.collect(tx.st.byAuthor, pubkey)
		if err != nil {
			return fmt.Errorf("sqlite: find the banned author's events: %w", err)
		}
		for _, e := range evs {
			if err := tx.remove(e, storage.ReasonBanned, &deleted); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return deleted, nil
}

// BannedPubKeys lists the banned pubkeys in ascending order.
func (s *Store) BannedPubKeys(ctx context.Context) ([]string, error) {
	if s.isClosed.Load() {
		return nil, storage.ErrClosed
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT pubkey FROM bans ORDER BY pubkey`)
	if err != nil {
		return nil, s.readErr("list bans", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var pk string
		if err := rows.Scan(&pk); err != nil {
			return nil, s.readErr("list bans", err)
		}
		out = append(out, pk)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr("list bans", err)
	}
	return out, nil
}
