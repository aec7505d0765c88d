package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/jackc/pgx/v5"
	"github.com/nbd-wtf/go-nostr"
)

// Delete removes the events with these ids and tombstones every id; see
// storage.Store.
func (s *Store) Delete(ctx context.Context, ids []string, reason storage.Reason) ([]storage.Deletion, error) {
	if s.isClosed() {
		return nil, storage.ErrClosed
	}
	if len(ids) == 0 {
		return nil, nil
	}
	raw := make([][]byte, 0, len(ids))
	keys := make([]int32, 0, len(ids))
	for _, id := range ids {
		b, ok := decodeHex32(id)
		if !ok {
			return nil, fmt.Errorf("delete: id %q is not 64 lowercase hex characters", id)
		}
		raw = append(raw, b)
		keys = append(keys, lockKey('e', id))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)

	ctx, err := writeContext(ctx)
	if err != nil {
		return nil, err
	}
	var out []storage.Deletion
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out = out[:0]
		// The same locks a save of these ids takes (shared) and a kind 5
		// naming them takes (exclusive), in the same sorted order.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::integer[]) AS k ORDER BY k`,
			lockClassEvent, keys); err != nil {
			return err
		}
		var err error
		out, err = deleteWhere(ctx, tx, `id = ANY($1)`, reason, 0, raw)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO tombstones (id, reason) SELECT x, $2 FROM unnest($1::bytea[]) AS x ON CONFLICT DO NOTHING`,
			raw, string(reason))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres delete: %w", busy(err))
	}
	s.keyPackagesDeleted(out)
	return out, nil
}

// DeleteExpired removes every event whose NIP-40 expiration is at or before
// now, tombstoning their ids.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) ([]storage.Deletion, error) {
	if s.isClosed() {
		return nil, storage.ErrClosed
	}
	ctx, err := writeContext(ctx)
	if err != nil {
		return nil, err
	}
	var out []storage.Deletion
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		out, err = deleteWhere(ctx, tx, `expires_at <= $1`, storage.ReasonExpired, 0, now.Unix())
		if err != nil || len(out) == 0 {
			return err
		}
		raw := make([][]byte, len(out))
		for i, d := range out {
			raw[i], _ = hex.DecodeString(d.ID)
		}
		_, err = tx.Exec(ctx, `INSERT INTO tombstones (id, reason) SELECT x, $2 FROM unnest($1::bytea[]) AS x ON CONFLICT DO NOTHING`,
			raw, string(storage.ReasonExpired))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres delete expired: %w", busy(err))
	}
	s.keyPackagesDeleted(out)
	return out, nil
}

// deleteWhere deletes the events matching cond (with args as $1, $2 ...),
// at most limit of each table when limit is positive, from the events
// table and the KeyPackage table, and their tag rows, buries the
// KeyPackages it removed (burrow_bury_twins: their twins go too, with
// reason twin, and tombstoned), and returns them as deletions with reason
// (twins with theirs). Under a limit, the KeyPackage events picked take
// along their twins that cond selects too, so a twin the operation itself
// targets goes with reason however the chunks fall, not as a twin.
func deleteWhere(ctx context.Context, tx pgx.Tx, cond string, reason storage.Reason, limit int, args ...any) ([]storage.Deletion, error) {
	events, kps := cond, cond
	if limit > 0 {
		events = "id IN (SELECT id FROM events WHERE " + cond + " LIMIT " + strconv.Itoa(limit) + ")"
		kps = "id IN (WITH pick AS (SELECT id, pubkey, kp_ref FROM keypackages WHERE " + cond + " LIMIT " + strconv.Itoa(limit) + ")" +
			" SELECT id FROM pick UNION SELECT id FROM keypackages WHERE (pubkey, kp_ref) IN (SELECT pubkey, kp_ref FROM pick) AND " + cond + ")"
	}
	rows, err := tx.Query(ctx, `WITH d AS (DELETE FROM events WHERE `+events+` RETURNING id, kind, pubkey, NULL::bytea AS kp_ref),
		k AS (DELETE FROM keypackages WHERE `+kps+` RETURNING id, kind, pubkey, kp_ref)
		SELECT id, kind, pubkey, kp_ref FROM d UNION ALL SELECT id, kind, pubkey, kp_ref FROM k`, args...)
	if err != nil {
		return nil, err
	}
	var (
		out        []storage.Deletion
		gone       [][]byte
		kpPubkeys  [][]byte
		kpRefs     [][]byte
		id, pubkey []byte
		ref        []byte
		kind       int32
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &kind, &pubkey, &ref}, func() error {
		gone = append(gone, id)
		out = append(out, storage.Deletion{
			ID: hex.EncodeToString(id), Kind: int(kind), PubKey: hex.EncodeToString(pubkey), Reason: reason,
		})
		if ref != nil {
			kpPubkeys = append(kpPubkeys, pubkey)
			kpRefs = append(kpRefs, ref)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(gone) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM event_tags WHERE event_id = ANY($1)`, gone); err != nil {
			return nil, err
		}
	}
	if len(kpRefs) == 0 {
		return out, nil
	}
	var twins saveResp
	twins, err = scanSaveWith(tx.QueryRow(ctx, `SELECT 0, 0::bigint, o_ids, o_kinds, o_pubkeys, o_reasons
		FROM burrow_bury_twins($1, $2, NULL, '{}', '{}', '{}', '{}')`, kpPubkeys, kpRefs))
	if err != nil {
		return nil, fmt.Errorf("bury KeyPackage twins: %w", err)
	}
	return append(out, twins.res.Deleted...), nil
}

// Long deletions (a ban, a request to vanish) run as a series of
// transactions, each deleting a chunk. One holds the author's lock, which
// a save of the author (or of a gift wrap to it) waits for in a writer's
// group commit, so a chunk is sized to take about chunkTarget: the size
// adapts to how long the last chunk took, starting small because an event
// may carry thousands of tag rows (issue 14: never more than 100 ms).
//
// A chunk's commit does not wait for its WAL to reach the disk (chunkTx):
// with synchronous_commit on, that flush made the chunks' tail (14 ms of
// a 34 ms chunk on a quiet machine, up to 82 ms on a loaded one), and the
// author's lock is held until the commit returns. The removal ends with a commit that does wait
// (flushChunks), which flushes the WAL past every chunk's commit, so what
// it returns is durable; a crash before that may undo the last chunks,
// which a new ban or request to vanish then removes again.
const (
	chunkTarget = 20 * time.Millisecond
	firstChunk  = 16
	maxChunk    = 4096
)

// nextChunk is the chunk size after one of size took took.
func nextChunk(size int, took time.Duration) int {
	if took <= 0 {
		return min(2*size, maxChunk)
	}
	scaled := int(float64(size) * float64(chunkTarget) / float64(took))
	return max(1, min(scaled, 2*size, maxChunk))
}

// deleteInChunks deletes and tombstones, with reason, the events cond
// selects (see deleteWhere), one chunk per transaction, until a chunk
// finds nothing. prep runs first in each transaction (to take locks). Once
// the first chunk has committed the rest run whatever ctx does, so a
// caller that gives up cannot leave the deletion half done. It returns
// every deletion (on failure, those committed before it).
func (s *Store) deleteInChunks(ctx context.Context, prep func(context.Context, pgx.Tx) error, cond string, reason storage.Reason, args ...any) ([]storage.Deletion, error) {
	ctx, err := writeContext(ctx)
	if err != nil {
		return nil, err
	}
	var all []storage.Deletion
	defer func() { s.keyPackagesDeleted(all) }()
	for size := firstChunk; ; {
		if s.chunkCap > 0 {
			size = min(size, s.chunkCap)
		}
		start := time.Now()
		var out []storage.Deletion
		err := pgx.BeginTxFunc(ctx, s.pool, chunkTx, func(tx pgx.Tx) error {
			if err := prep(ctx, tx); err != nil {
				return err
			}
			var err error
			if out, err = deleteWhere(ctx, tx, cond, reason, size, args...); err != nil || len(out) == 0 {
				return err
			}
			gone := make([][]byte, len(out))
			for i, d := range out {
				gone[i], _ = hex.DecodeString(d.ID)
			}
			_, err = tx.Exec(ctx, `INSERT INTO tombstones (id, reason) SELECT x, $2 FROM unnest($1::bytea[]) AS x ON CONFLICT DO NOTHING`,
				gone, string(reason))
			return err
		})
		took := time.Since(start)
		if s.chunkHook != nil {
			s.chunkHook(took)
		}
		if err != nil {
			if ferr := s.flushChunks(ctx); ferr != nil {
				err = errors.Join(err, ferr)
			}
			return all, busy(err)
		}
		all = append(all, out...)
		if len(out) == 0 {
			// Every chunk has committed, the ban of Ban's first one too.
			return all, s.flushChunks(ctx)
		}
		size = nextChunk(size, took)
	}
}

// chunkTx begins a chunk's transaction: its commit returns once its WAL
// is written, without waiting for the flush (flushChunks waits for it).
var chunkTx = pgx.TxOptions{BeginQuery: "BEGIN; SET LOCAL synchronous_commit = off"}

// flushChunks commits a transaction that waits for the WAL flush as the
// session's synchronous_commit says, up to its own commit record, and so
// past the commit of every chunk before it. Only a transaction that wrote
// WAL waits at its commit; the smallest such write is a transactional
// logical decoding message (no table is touched; a logical decoding
// consumer, if any, sees a message with the prefix "burrow", which it may
// ignore).
func (s *Store) flushChunks(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT pg_logical_emit_message(true, 'burrow', 'chunked deletion flushed')`)
		return err
	})
	if err != nil {
		return fmt.Errorf("flush the chunks' commits: %w", busy(err))
	}
	return nil
}

// lockAuthor takes the exclusive lock on pubkey's events that every save
// of the author holds shared (lockKey 'p').
func lockAuthor(pubkey string) func(context.Context, pgx.Tx) error {
	return func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockClassEvent, lockKey('p', pubkey))
		return err
	}
}

// vanishBefore deletes, in chunks, what the NIP-62 request req deletes
// (every event of its author, and every gift wrap to it, created at or
// before it), before the save that stores it, so that no transaction of
// it holds the author's lock long; burrow_save then deletes whatever
// arrived meanwhile. It runs only for a request Save would not refuse for
// its own shape; one refused later (a duplicate, a banned author) had its
// events deleted already by the first copy or the ban.
func (s *Store) vanishBefore(ctx context.Context, req *nostr.Event) ([]storage.Deletion, error) {
	pk, _ := decodeHex32(req.PubKey) // checked by newSaveArgs
	own, err := s.deleteInChunks(ctx, lockAuthor(req.PubKey), `pubkey = $1 AND created_at <= $2`, storage.ReasonVanish,
		pk, int64(req.CreatedAt))
	if err != nil {
		return own, err
	}
	wraps, err := s.deleteInChunks(context.WithoutCancel(ctx), lockAuthor(req.PubKey),
		`id IN (SELECT t.event_id FROM event_tags t WHERE t.name = 'p' AND t.value = $1 AND t.kind = 1059 AND t.created_at <= $2)`,
		storage.ReasonVanish, []byte(req.PubKey), int64(req.CreatedAt))
	return append(own, wraps...), err
}
