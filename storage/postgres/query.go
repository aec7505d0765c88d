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
}

func (q *sqlFilter) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

// translate builds the WHERE clause of f, which storage.Indexable accepts,
// for events visible at now, for the events table or (kp) the KeyPackage
// table; every condition has an index in both (migrations 1 and 7). Its
// placeholders follow those of args, which it extends.
func translate(f nostr.Filter, now int64, kp bool, args []any) *sqlFilter {
	q := &sqlFilter{args: args}
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
	tagTable, tagID := "event_tags", "event_id"
	if kp {
		tagTable, tagID = "keypackage_tags", "id"
	}
	for _, name := range names {
		vals := f.Tags[name]
		if vals == nil {
			continue
		}
		if len(vals) == 0 {
			q.none = true
			continue
		}
		bs := make([][]byte, len(vals))
		for i, v := range vals {
			bs[i] = indexValue(v)
		}
		q.where = append(q.where, "id IN (SELECT "+tagID+" FROM "+tagTable+" WHERE name = "+q.arg(name)+
			" AND value = ANY("+q.arg(bs)+"))")
	}
	q.where = append(q.where, "(expires_at IS NULL OR expires_at > "+q.arg(now)+")")
	return q
}

// isKeyPackageKind reports the kinds stored in the keypackages table.
func isKeyPackageKind(k int) bool { return k == 443 || k == 30443 }

// tablesFor reports which tables can hold events matching f.
func tablesFor(f nostr.Filter) (events, keyPackages bool) {
	if f.Kinds == nil {
		return true, true
	}
	for _, k := range f.Kinds {
		if isKeyPackageKind(k) {
			keyPackages = true
		} else {
			events = true
		}
	}
	return events, keyPackages
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
		if err := storage.Indexable(f); err != nil {
			yield(nil, fmt.Errorf("postgres query: %w", err))
			return
		}
		// KeyPackages are read through keypackage_events, which fetches
		// the content of the rows returned (migration 6).
		sql, args := selectBoth(f, s.now().Unix(), eventColumns, "keypackage_events", "created_at DESC, id")
		if sql == "" {
			return
		}
		rows, err := s.pool.Query(ctx, sql, args...)
		if err != nil {
			yield(nil, fmt.Errorf("postgres query: %w", err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			ev, err := scanEvent(rows)
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(ev, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(nil, fmt.Errorf("postgres query: %w", err))
		}
	}
}

// selectBoth is the statement reading columns of f's events at now, in
// order, f.Limit capping the count: from the events table and, through
// kpTable, the KeyPackage table, in one statement (UNION ALL, each branch
// ordered and limited) when f can match both, so a read holds one
// connection and streams. It is "" when f can match nothing.
func selectBoth(f nostr.Filter, now int64, columns, kpTable, order string) (sql string, args []any) {
	inEvents, inKPs := tablesFor(f)
	var branches []string
	for i, table := range []string{"events", kpTable} {
		kp := i == 1
		if kp && !inKPs || !kp && !inEvents {
			continue
		}
		q := translate(f, now, kp, args)
		if q.none {
			continue
		}
		b := "SELECT " + columns + " FROM " + table + " WHERE " + strings.Join(q.where, " AND ") + " ORDER BY " + order
		if f.Limit > 0 {
			b += " LIMIT " + q.arg(int64(f.Limit))
		}
		args = q.args
		branches = append(branches, b)
	}
	switch len(branches) {
	case 0:
		return "", nil
	case 1:
		return branches[0], args
	}
	sql = "(" + strings.Join(branches, ") UNION ALL (") + ") ORDER BY " + order
	if f.Limit > 0 {
		args = append(args, int64(f.Limit))
		sql += " LIMIT $" + strconv.Itoa(len(args))
	}
	return sql, args
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
	if err := storage.Indexable(f); err != nil {
		return 0, fmt.Errorf("postgres count: %w", err)
	}
	now := s.now().Unix()
	inEvents, inKPs := tablesFor(f)
	var total int64
	for _, kp := range []bool{false, true} {
		if kp && !inKPs || !kp && !inEvents {
			continue
		}
		n, err := s.countTable(ctx, f, now, kp)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

func (s *Store) countTable(ctx context.Context, f nostr.Filter, now int64, kp bool) (int64, error) {
	q := translate(f, now, kp, nil)
	if q.none {
		return 0, nil
	}
	table := "events"
	if kp {
		table = "keypackages" // without content, which counting never needs
	}
	var n int64
	err := s.pool.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE "+strings.Join(q.where, " AND "), q.args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("postgres count: %w", err)
	}
	return n, nil
}
