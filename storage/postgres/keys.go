package postgres

import (
	"context"
	"fmt"
	"iter"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// Keys yields the (created_at, id) of the events matching f, oldest first
// with ties by lowest id; see storage.Store.
func (s *Store) Keys(ctx context.Context, f nostr.Filter) iter.Seq2[storage.Key, error] {
	return func(yield func(storage.Key, error) bool) {
		if s.isClosed() {
			yield(storage.Key{}, storage.ErrClosed)
			return
		}
		if err := storage.Indexable(f); err != nil {
			yield(storage.Key{}, fmt.Errorf("postgres keys: %w", err))
			return
		}
		// KeyPackages from their own table: no content is read.
		sql, args := selectBoth(f, s.now().Unix(), "created_at, id", "keypackages", "created_at, id")
		if sql == "" {
			return
		}
		rows, err := s.pool.Query(ctx, sql, args...)
		if err != nil {
			yield(storage.Key{}, fmt.Errorf("postgres keys: %w", err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var (
				k  storage.Key
				id []byte
			)
			if err := rows.Scan(&k.CreatedAt, &id); err != nil {
				yield(storage.Key{}, fmt.Errorf("postgres scan keys: %w", err))
				return
			}
			if len(id) != len(k.ID) {
				yield(storage.Key{}, fmt.Errorf("postgres keys: stored id of %d bytes", len(id)))
				return
			}
			copy(k.ID[:], id)
			if !yield(k, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(storage.Key{}, fmt.Errorf("postgres keys: %w", err))
		}
	}
}
