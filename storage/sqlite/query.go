package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// where builds the WHERE clause for f with its arguments. ok is false when f
// can match nothing (an empty ids, authors, kinds or tag value list), so no
// query needs to run. Expired events never match. NIP-50 search is not
// supported, so a filter with a search term matches nothing rather than
// events that ignore it.
func where(f nostr.Filter, now time.Time) (clause string, args []any, ok bool) {
	if f.Search != "" {
		return "", nil, false
	}
	var conds []string
	in := func(column string, n int) string {
		return column + " IN (" + strings.TrimSuffix(strings.Repeat("?,", n), ",") + ")"
	}
	// Which index drives the query, most selective kind of condition
	// first: ids, then tags, then authors, then kinds, then the time range
	// (authors and kinds carry created_at in their indexes). SQLite has no
	// statistics here and otherwise may walk every event of a common kind
	// to probe its tags. A unary + keeps a column's index out of the plan.
	byTags := false
	for _, vs := range f.Tags {
		byTags = byTags || vs != nil
	}
	byTags = byTags && f.IDs == nil
	byAuthors := f.IDs == nil && !byTags && f.Authors != nil
	col := func(name string, usable bool) string {
		if usable {
			return name
		}
		return "+" + name
	}
	pubkey, kind, createdAt := col("e.pubkey", !byTags), col("e.kind", !byTags && !byAuthors), col("e.created_at", !byTags)
	if f.IDs != nil {
		if len(f.IDs) == 0 {
			return "", nil, false
		}
		conds = append(conds, in("e.id", len(f.IDs)))
		for _, id := range f.IDs {
			args = append(args, id)
		}
	}
	if f.Authors != nil {
		if len(f.Authors) == 0 {
			return "", nil, false
		}
		conds = append(conds, in(pubkey, len(f.Authors)))
		for _, a := range f.Authors {
			args = append(args, a)
		}
	}
	if f.Kinds != nil {
		if len(f.Kinds) == 0 {
			return "", nil, false
		}
		conds = append(conds, in(kind, len(f.Kinds)))
		for _, k := range f.Kinds {
			args = append(args, k)
		}
	}
	if f.Since != nil {
		conds = append(conds, createdAt+" >= ?")
		args = append(args, int64(*f.Since))
	}
	if f.Until != nil {
		conds = append(conds, createdAt+" <= ?")
		args = append(args, int64(*f.Until))
	}
	// Sorted names keep the SQL text stable for the statement cache.
	names := make([]string, 0, len(f.Tags))
	for name := range f.Tags {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		values := f.Tags[name]
		if values == nil {
			continue // go-nostr's matcher ignores a nil list
		}
		if len(values) == 0 {
			return "", nil, false
		}
		// Matching on name and value together is what keeps {"#h":[X]} from
		// matching an event whose "p" tag is X. The IN form (equivalent to
		// EXISTS here) lets SQLite drive the query from the tags key: with
		// EXISTS it walks every event newest first and probes tags for each.
		conds = append(conds, "e.n IN (SELECT t.event FROM tags t WHERE t.name = ? AND "+in("t.value", len(values))+")")
		args = append(args, name)
		for _, v := range values {
			args = append(args, v)
		}
	}
	conds = append(conds, "(e.expires_at IS NULL OR e.expires_at > ?)")
	args = append(args, now.Unix())
	return strings.Join(conds, " AND "), args, true
}

// readMode is what a statement built by selectSQL reads.
type readMode int

const (
	readEvents readMode = iota // Query: whole events, newest first
	readCount                  // Count: how many
	readKeys                   // Keys: (created_at, id), oldest first
)

// selectSQL is the statement Query, Count or Keys (mode) runs for f; ok is
// false when f can match nothing.
func selectSQL(f nostr.Filter, now time.Time, mode readMode) (q string, args []any, ok bool) {
	cond, args, ok := where(f, now)
	if !ok {
		return "", nil, false
	}
	switch mode {
	case readCount:
		return `SELECT COUNT(*) FROM events e WHERE ` + cond, args, true
	case readKeys:
		q = `SELECT e.created_at, e.id FROM events e WHERE ` + cond + ` ORDER BY e.created_at, e.id`
	default:
		q = `SELECT e.id, e.pubkey, e.created_at, e.kind, e.tags, e.content, e.sig FROM events e WHERE ` +
			cond + ` ORDER BY e.created_at DESC, e.id ASC`
	}
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return q, args, true
}

// Query streams the events matching f from a read connection, newest first
// with ties by lowest id.
func (s *Store) Query(ctx context.Context, f nostr.Filter) iter.Seq2[*nostr.Event, error] {
	return func(yield func(*nostr.Event, error) bool) {
		if s.isClosed.Load() {
			yield(nil, storage.ErrClosed)
			return
		}
		if f.LimitZero && f.Limit <= 0 {
			return
		}
		if err := storage.Indexable(f); err != nil {
			yield(nil, fmt.Errorf("sqlite: query: %w", err))
			return
		}
		q, args, ok := selectSQL(f, time.Now(), readEvents)
		if !ok {
			return
		}
		rows, err := s.readDB.QueryContext(ctx, q, args...)
		if err != nil {
			yield(nil, s.readErr("query", err))
			return
		}
		// Also runs when the consumer breaks out early, returning the
		// connection to the pool.
		defer rows.Close()
		for rows.Next() {
			ev := &nostr.Event{}
			var tags string
			if err := rows.Scan(&ev.ID, &ev.PubKey, &ev.CreatedAt, &ev.Kind, &tags, &ev.Content, &ev.Sig); err != nil {
				yield(nil, s.readErr("scan", err))
				return
			}
			if err := json.Unmarshal([]byte(tags), &ev.Tags); err != nil {
				yield(nil, fmt.Errorf("sqlite: decode tags of %s: %w", ev.ID, err))
				return
			}
			if !yield(ev, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(nil, s.readErr("query", err))
		}
	}
}

// Count returns how many events match f, ignoring f.Limit.
func (s *Store) Count(ctx context.Context, f nostr.Filter) (int64, error) {
	if s.isClosed.Load() {
		return 0, storage.ErrClosed
	}
	if err := storage.Indexable(f); err != nil {
		return 0, fmt.Errorf("sqlite: count: %w", err)
	}
	q, args, ok := selectSQL(f, time.Now(), readCount)
	if !ok {
		return 0, nil
	}
	var n int64
	if err := s.readDB.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, s.readErr("count", err)
	}
	return n, nil
}
