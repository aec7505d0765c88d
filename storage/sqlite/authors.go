package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// vanish applies the NIP-62 request req in the save that stores it: it
// deletes every event of req's author and every kind 1059 whose "p" tag
// names the author, created at or before req, and tombstones them. Later
// events of the author dated at or before req are refused by the check in
// save, as long as req is stored. Save has removed them in chunks before
// (vanishBefore), so this finds only what arrived meanwhile.
func (tx *txn) vanish(req *nostr.Event, deleted *[]storage.Deletion) error {
	own, err := tx.collect(tx.st.vanishOwn, req.PubKey, int64(req.CreatedAt), -1)
	if err != nil {
		return fmt.Errorf("sqlite: find the author's events: %w", err)
	}
	wraps, err := tx.collect(tx.st.vanishWraps, req.PubKey, int64(req.CreatedAt), -1)
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

// An author's events removed for a ban or a request to vanish go in a
// series of write ops, so that the writes of everyone else queued
// meanwhile wait little (issue 14: never more than 100 ms). A chunk's cost
// is mostly its commit, which grows with the pages it dirtied (every index
// of every event, a tombstone each), so its size adapts to how long the
// last one took against chunkTarget; chunkWork also stops a chunk whose
// events turn out heavy (thousands of tag rows each) before the size has
// caught up.
const (
	chunkTarget = 25 * time.Millisecond
	chunkWork   = 8 * time.Millisecond
	firstChunk  = 32
	maxChunk    = 4096
	chunkPage   = 64 // rows removeChunk reads at a time
)

// nextChunk is the chunk size after one of size took took.
func nextChunk(size int, took time.Duration) int {
	if took <= 0 {
		return min(2*size, maxChunk)
	}
	scaled := int(float64(size) * float64(chunkTarget) / float64(took))
	return max(1, min(scaled, 2*size, maxChunk))
}

// removeChunk removes the events stmt selects (given args, then a row
// limit), with reason, at most size of them, reading chunkPage rows at a
// time and stopping early once the batch has worked chunkWork. more
// reports that some may remain. It removes at least one event when there
// is one, so every call makes progress.
func (tx *txn) removeChunk(stmt *rawStmt, args []any, reason storage.Reason, size int, deleted *[]storage.Deletion) (more bool, err error) {
	for removed := 0; removed < size; {
		want := min(chunkPage, size-removed)
		found, err := tx.collect(stmt, append(args, want)...)
		if err != nil {
			return false, fmt.Errorf("sqlite: find events to remove: %w", err)
		}
		for _, e := range found {
			if removed > 0 && time.Since(tx.started) >= chunkWork {
				return true, nil
			}
			if err := tx.remove(e, reason, deleted); err != nil {
				return false, err
			}
			removed++
		}
		if len(found) < want {
			return false, nil
		}
	}
	return true, nil
}

// inChunks runs op as write ops, each removing at most the size it is
// given, until op reports nothing more; each op ends with the burial of
// the KeyPackages it removed, whose twins that op targets too go with
// op's reason (own, see buryTwins). It returns every deletion (on failure, those
// committed before it). Once the first op has committed the rest run
// whatever ctx does: a caller that gives up cannot leave the removal half
// done.
func (s *Store) inChunks(ctx context.Context, own func(stored) storage.Reason, op func(tx *txn, size int, deleted *[]storage.Deletion) (more bool, err error)) ([]storage.Deletion, error) {
	var all []storage.Deletion
	walMark := s.walWritten.Load()
	for size := firstChunk; ; {
		var (
			chunk []storage.Deletion
			more  bool
		)
		if s.chunkCap > 0 {
			size = min(size, s.chunkCap)
		}
		start := time.Now()
		err := s.write(ctx, func(tx *txn) error {
			chunk = nil // the writer may run an op twice
			var err error
			if more, err = op(tx, size, &chunk); err != nil {
				return err
			}
			return tx.buryTwins(sql.NullString{}, own, &chunk)
		})
		if err != nil {
			return all, err
		}
		all = append(all, chunk...)
		if !more {
			return all, nil
		}
		size = nextChunk(size, time.Since(start))
		ctx = context.WithoutCancel(ctx)
		s.catchUpWAL(ctx, &walMark)
	}
}

// vanishBefore removes, in chunks, what the NIP-62 request req deletes
// (see vanish), before the save that stores it, so that no write op of it
// holds the writer long. It runs only for a request that Save would not
// refuse for its own shape; one refused later (a duplicate, a banned
// author) had its events removed already by the first copy or the ban.
func (s *Store) vanishBefore(ctx context.Context, req *nostr.Event) ([]storage.Deletion, error) {
	own := func(e stored) storage.Reason {
		if e.pubkey == req.PubKey && e.createdAt <= int64(req.CreatedAt) {
			return storage.ReasonVanish
		}
		return ""
	}
	return s.inChunks(ctx, own, func(tx *txn, size int, deleted *[]storage.Deletion) (bool, error) {
		more, err := tx.removeChunk(tx.st.vanishOwn, []any{req.PubKey, int64(req.CreatedAt)}, storage.ReasonVanish, size, deleted)
		if err != nil || more {
			return more, err
		}
		if left := size - len(*deleted); left > 0 {
			return tx.removeChunk(tx.st.vanishWraps, []any{req.PubKey, int64(req.CreatedAt)}, storage.ReasonVanish, left, deleted)
		}
		return true, nil
	})
}

// Ban records pubkey as banned, so its events are refused with
// storage.ErrBanned, then deletes and tombstones every event it has
// stored, in write ops that each hold the writer about chunkTarget. The
// ban is recorded by the first op, so no event of the author is stored
// after it; banning again finishes a ban a crash interrupted. On failure
// it returns what it removed before.
func (s *Store) Ban(ctx context.Context, pubkey string) ([]storage.Deletion, error) {
	if s.isClosed.Load() {
		return nil, storage.ErrClosed
	}
	if !nostr.IsValid32ByteHex(pubkey) {
		return nil, fmt.Errorf("sqlite: ban: %q is not a lowercase hex public key", pubkey)
	}
	own := func(stored) storage.Reason { return storage.ReasonBanned } // twins share an author
	return s.inChunks(ctx, own, func(tx *txn, size int, deleted *[]storage.Deletion) (bool, error) {
		if _, err := tx.exec(tx.st.ban, pubkey, time.Now().Unix()); err != nil {
			return false, fmt.Errorf("sqlite: ban: %w", err)
		}
		return tx.removeChunk(tx.st.byAuthor, []any{pubkey}, storage.ReasonBanned, size, deleted)
	})
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
