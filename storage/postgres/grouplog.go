package postgres

import (
	"context"
	"fmt"
	"iter"

	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// Sequenced is a stored kind 445 event with its group sequence number.
type Sequenced struct {
	Seq   int64
	Event *nostr.Event
}

// GroupLog yields the stored kind 445 events of group h whose seq is above
// after, in ascending seq, at most limit of them (limit <= 0: no cap),
// skipping expired ones. Numbers of deleted or expired events are holes,
// never reused. It serves the since_seq reads of DESIGN.md "Sequencing";
// storage.Store does not declare it yet.
func (s *Store) GroupLog(ctx context.Context, h string, after int64, limit int) iter.Seq2[Sequenced, error] {
	return func(yield func(Sequenced, error) bool) {
		if s.isClosed() {
			yield(Sequenced{}, storage.ErrClosed)
			return
		}
		sql := `SELECT seq, ` + eventColumns + ` FROM events
			WHERE h = $1 AND seq > $2 AND (expires_at IS NULL OR expires_at > $3)
			ORDER BY seq`
		args := []any{[]byte(h), after, s.now().Unix()}
		if limit > 0 {
			sql += ` LIMIT $4`
			args = append(args, int64(limit))
		}
		rows, err := s.pool.Query(ctx, sql, args...)
		if err != nil {
			yield(Sequenced{}, fmt.Errorf("postgres group log: %w", err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var seq int64
			ev, err := scanEventWith(rows, &seq)
			if err != nil {
				yield(Sequenced{}, err)
				return
			}
			if !yield(Sequenced{Seq: seq, Event: ev}, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(Sequenced{}, fmt.Errorf("postgres group log: %w", err))
		}
	}
}
