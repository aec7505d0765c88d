package sqlite

import (
	"context"
	"encoding/hex"
	"fmt"
	"iter"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// Keys yields the (created_at, id) of the events matching f, oldest first
// with ties by lowest id; see storage.Store. Ids are stored as lowercase
// hex, whose order is the order of the bytes.
func (s *Store) Keys(ctx context.Context, f nostr.Filter) iter.Seq2[storage.Key, error] {
	return func(yield func(storage.Key, error) bool) {
		if s.isClosed.Load() {
			yield(storage.Key{}, storage.ErrClosed)
			return
		}
		if err := storage.Indexable(f); err != nil {
			yield(storage.Key{}, fmt.Errorf("sqlite: keys: %w", err))
			return
		}
		q, args, ok := selectSQL(f, time.Now(), readKeys)
		if !ok {
			return
		}
		rows, err := s.readDB.QueryContext(ctx, q, args...)
		if err != nil {
			yield(storage.Key{}, s.readErr("keys", err))
			return
		}
		defer rows.Close()
		var id []byte
		for rows.Next() {
			var k storage.Key
			if err := rows.Scan(&k.CreatedAt, &id); err != nil {
				yield(storage.Key{}, s.readErr("scan keys", err))
				return
			}
			if n, err := hex.Decode(k.ID[:], id); err != nil || n != len(k.ID) {
				yield(storage.Key{}, fmt.Errorf("sqlite: keys: stored id %q is not 32 bytes of hex", id))
				return
			}
			if !yield(k, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(storage.Key{}, s.readErr("keys", err))
		}
	}
}
