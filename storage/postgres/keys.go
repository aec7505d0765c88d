package postgres

import (
	"context"
	"fmt"
	"iter"
	"strconv"
	"strings"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// Keys yields the (created_at, id) of the events matching f, oldest first
// with ties by lowest id; see storage.Store. KeyPackages come from their
// own table without their content; when f can match both tables one
// statement reads both, like Query.
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
		now := s.now().Unix()
		inEvents, inKPs := tablesFor(f)
		var (
			branches []string
			args     []any
		)
		for i, table := range []string{"events", "keypackages"} {
			kp := i == 1
			if kp && !inKPs || !kp && !inEvents {
				continue
			}
			q := translate(f, now, kp, args)
			if q.none {
				continue
			}
			b := "SELECT created_at, id FROM " + table + " WHERE " + strings.Join(q.where, " AND ") +
				" ORDER BY created_at, id"
			if f.Limit > 0 {
				b += " LIMIT " + q.arg(int64(f.Limit))
			}
			args = q.args
			branches = append(branches, b)
		}
		var sql string
		switch len(branches) {
		case 0:
			return
		case 1:
			sql = branches[0]
		default:
			sql = "(" + strings.Join(branches, ") UNION ALL (") + ") ORDER BY created_at, id"
			if f.Limit > 0 {
				args = append(args, int64(f.Limit))
				sql += " LIMIT $" + strconv.Itoa(len(args))
			}
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
