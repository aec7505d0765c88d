package postgres

import (
	"context"
	"encoding/hex"
	"fmt"
	"iter"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/burrow-relay/burrow/storage"
	"github.com/jackc/pgx/v5"
	"github.com/nbd-wtf/go-nostr"
)

const eventColumns = `id, pubkey, created_at, kind, tags, content, sig`

// sqlFilter is a nostr.Filter translated to a WHERE clause.
type sqlFilter struct {
	where []string
	args  []any
	// none: the filter cannot match anything (an empty list, no valid id).
	none bool
	// recheck: part of the filter has no SQL form (tag names that are not
	// single letters), so rows are checked with Filter.Matches and the limit
	// is applied here rather than in SQL.
	recheck bool
}

func (q *sqlFilter) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

// translate builds the WHERE clause of f for events visible at now.
func translate(f nostr.Filter, now int64) *sqlFilter {
	q := &sqlFilter{}
	hex32s := func(col string, vals []string) {
		if vals == nil {
			return
		}
		var bs [][]byte
		for _, v := range vals {
			if b, ok := decodeHex32(v); ok {
				bs = append(bs, b)
			}
		}
		if len(bs) == 0 {
			q.none = true
			return
		}
		q.where = append(q.where, col+" = ANY("+q.arg(bs)+")")
	}
	hex32s("id", f.IDs)
	hex32s("pubkey", f.Authors)
	if f.Kinds != nil {
		var ks []int32
		for _, k := range f.Kinds {
			if k >= 0 && k <= math.MaxInt32 {
				ks = append(ks, int32(k))
			}
		}
		if len(ks) == 0 {
			q.none = true
		}
		q.where = append(q.where, "kind = ANY("+q.arg(ks)+")")
	}
	if f.Since != nil {
		q.where = append(q.where, "created_at >= "+q.arg(int64(*f.Since)))
	}
	if f.Until != nil {
		q.where = append(q.where, "created_at <= "+q.arg(int64(*f.Until)))
	}
	names := make([]string, 0, len(f.Tags))
	for name := range f.Tags {
		names = append(names, name)
	}
	slices.Sort(names) // stable SQL text, so prepared statements are reused
	for _, name := range names {
		vals := f.Tags[name]
		if vals == nil {
			continue
		}
		if len(vals) == 0 {
			q.none = true
			continue
		}
		if !indexedTagName(name) {
			q.recheck = true
			continue
		}
		bs := make([][]byte, len(vals))
		for i, v := range vals {
			bs[i] = indexValue(v)
		}
		q.where = append(q.where, "id IN (SELECT event_id FROM event_tags WHERE name = "+q.arg(name)+
			" AND value = ANY("+q.arg(bs)+"))")
	}
	q.where = append(q.where, "(expires_at IS NULL OR expires_at > "+q.arg(now)+")")
	return q
}

// Query yields the events matching f, newest first; see storage.Store.
func (s *Store) Query(ctx context.Context, f nostr.Filter) iter.Seq2[*nostr.Event, error] {
	return func(yield func(*nostr.Event, error) bool) {
		if s.isClosed() {
			yield(nil, storage.ErrClosed)
			return
		}
		if f.LimitZero && f.Limit <= 0 {
			return
		}
		q := translate(f, s.now().Unix())
		if q.none {
			return
		}
		sql := "SELECT " + eventColumns + " FROM events WHERE " + strings.Join(q.where, " AND ") +
			" ORDER BY created_at DESC, id"
		if f.Limit > 0 && !q.recheck {
			sql += " LIMIT " + q.arg(int64(f.Limit))
		}
		rows, err := s.pool.Query(ctx, sql, q.args...)
		if err != nil {
			yield(nil, fmt.Errorf("postgres query: %w", err))
			return
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			ev, err := scanEvent(rows)
			if err != nil {
				yield(nil, err)
				return
			}
			if q.recheck && !f.Matches(ev) {
				continue
			}
			if !yield(ev, nil) {
				return
			}
			n++
			if f.Limit > 0 && n >= f.Limit {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(nil, fmt.Errorf("postgres query: %w", err))
		}
	}
}

func scanEvent(rows pgx.Rows) (*nostr.Event, error) { return scanEventWith(rows) }

// scanEventWith scans a row of extra columns followed by eventColumns.
func scanEventWith(rows pgx.Rows, extra ...any) (*nostr.Event, error) {
	var (
		id, pubkey, tags, content, sig []byte
		createdAt                      int64
		kind                           int32
	)
	dest := append(extra, &id, &pubkey, &createdAt, &kind, &tags, &content, &sig)
	if err := rows.Scan(dest...); err != nil {
		return nil, fmt.Errorf("postgres scan: %w", err)
	}
	t, err := decodeTags(tags)
	if err != nil {
		return nil, fmt.Errorf("event %x: %w", id, err)
	}
	return &nostr.Event{
		ID:        hex.EncodeToString(id),
		PubKey:    hex.EncodeToString(pubkey),
		CreatedAt: nostr.Timestamp(createdAt),
		Kind:      int(kind),
		Tags:      t,
		Content:   string(content),
		Sig:       hex.EncodeToString(sig),
	}, nil
}

// Count returns how many events match f, ignoring f.Limit and f.LimitZero.
func (s *Store) Count(ctx context.Context, f nostr.Filter) (int64, error) {
	if s.isClosed() {
		return 0, storage.ErrClosed
	}
	q := translate(f, s.now().Unix())
	if q.none {
		return 0, nil
	}
	if q.recheck {
		f.Limit, f.LimitZero = 0, false
		var n int64
		for _, err := range s.Query(ctx, f) {
			if err != nil {
				return 0, err
			}
			n++
		}
		return n, nil
	}
	var n int64
	err := s.pool.QueryRow(ctx, "SELECT count(*) FROM events WHERE "+strings.Join(q.where, " AND "), q.args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("postgres count: %w", err)
	}
	return n, nil
}
